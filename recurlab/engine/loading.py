"""The one door to a model: open a run directory or a Hugging Face model folder on a device.

    m = open_model("runs/add-1")                       # a run: its latest complete checkpoint
    m = open_model(run, step=500, device="cuda")       # a RunDir, a chosen checkpoint
    m = open_model("models/huginn-0125", device="auto")  # a folder with config.json, by model_type
    m.model, m.tokenizer, m.cfg, m.device, m.label, m.run, m.checkpoint, m.step, m.source, m.r_mean
    m.engine.generate("12+34=")                        # an Engine on the same device, made once

    model, tok, cfg, ckpt = open_run("add-1", step=500, runs_dir="runs")   # runs only

What a folder is decides how it opens: run.yaml makes it a run directory; config.json makes it a
Hugging Face folder, opened by the loader registered for its `model_type` in FOLDER_LOADERS
(`huginn_raven`: Huginn-0125 and retrofitted Llama models; `ouro`: Ouro; see recurlab.families). A new model family registers one loader there; every caller
(CLI, TUI, benchmarks) then opens it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

from recurlab.checkpoint import load_model
from recurlab.config import RunConfig, run_config
from recurlab.devices import check_device, resolve_device
from recurlab.folders import MODEL_TYPES, folder_model_type
from recurlab.options.generate import DEVICE
from recurlab.rundir import DEFAULT_RUNS_DIR, Checkpoint, RunDir, RunError, resolve_run
from recurlab.tokenizer import run_tokenizer


@dataclass
class OpenedModel:
    model: object  # RecurrentLM in eval mode on `device`
    tokenizer: object
    cfg: RunConfig  # a run's config; for a model folder, one that describes the model
    device: str
    label: str  # for screens and logs: "RUN @ step N" or the folder name
    path: Path
    run: RunDir | None = None  # None for a model folder
    checkpoint: Checkpoint | None = None  # runs only
    kind: str = "run"  # "run" or the folder's model_type

    @property
    def step(self) -> int | None:
        return self.checkpoint.step if self.checkpoint else None

    @property
    def source(self) -> dict:
        """Where the model came from, as fields of a JSON result."""
        if self.run is not None:
            return {"run": self.run.name, "step": self.step}
        return {"model": str(self.path)}

    @property
    def r_mean(self) -> int:
        return int(getattr(self.cfg.train, "r_mean", 8) or 8)

    @cached_property
    def engine(self):
        from recurlab.engine.engine import Engine

        return Engine(self.model, self.tokenizer, device=self.device)


def _open_family(path: Path, device: str):
    # recurlab.families tells Huginn-0125 from retrofitted checkpoints (both huginn_raven) by their tensors
    from recurlab.families import open_folder

    return open_folder(path, device=device)


# config.json model_type -> loader(folder, device) -> (model, tokenizer, RunConfig)
# (a plain `llama` folder is refused there with the command that retrofits it)
FOLDER_LOADERS: dict[str, Callable[[Path, str], tuple]] = {kind: _open_family for kind in MODEL_TYPES}


def open_model(target: str | Path | RunDir, step: int | None = None, device: str = DEVICE) -> OpenedModel:
    """Open a run directory (run.yaml) or a model folder (config.json) on `device` (auto: CUDA if present)."""
    check_device(device)
    device = resolve_device(device)
    if isinstance(target, RunDir) or (Path(target) / "run.yaml").is_file():
        run = target if isinstance(target, RunDir) else RunDir(target)
        cfg = run_config(run)
        tokenizer = run_tokenizer(run)
        model, ckpt = load_model(run, step=step, device=device)
        return OpenedModel(model, tokenizer, cfg, device, f"{run.name} @ step {ckpt.step}", run.path, run=run,
                            checkpoint=ckpt)
    path = Path(target)
    if not path.is_dir():
        raise RunError(f"{path} does not exist or is not a folder; give a run directory or a model folder")
    if not (path / "config.json").is_file():
        raise RunError(f"{path} is neither a run directory (run.yaml) nor a Hugging Face model folder (config.json)")
    if step is not None:
        raise RunError(f"{path} is a model folder, which has no checkpoints to choose with a step")
    kind = folder_model_type(path, tuple(FOLDER_LOADERS))
    model, tokenizer, cfg = FOLDER_LOADERS[kind](path, device)
    return OpenedModel(model, tokenizer, cfg, device, path.name, path, kind=kind)


def open_run(run_dir: str | Path | RunDir, step: int | None = None, device: str = "cpu",
             runs_dir: str | Path = DEFAULT_RUNS_DIR):
    """-> (model in eval mode on `device`, tokenizer, RunConfig, Checkpoint) for a run, by name or path."""
    run = run_dir if isinstance(run_dir, RunDir) else resolve_run(str(run_dir), runs_dir)
    m = open_model(run, step=step, device=device)
    return m.model, m.tokenizer, m.cfg, m.checkpoint
