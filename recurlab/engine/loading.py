"""The one door to a model: open a run directory or a Hugging Face model folder on a device.

    m = open_model("runs/add-1")                       # a run: its latest complete checkpoint
    m = open_model(run, step=500, device="cuda")       # a RunDir, a chosen checkpoint
    m = open_model("models/huginn-0125", device="auto")  # a folder with config.json, by its family
    m = open_model("models/huginn-0125", dtype="bfloat16")   # folders: bf16 on CUDA, fp32 on CPU by default
    m.model, m.tokenizer, m.cfg, m.device, m.label, m.run, m.checkpoint, m.step, m.source, m.r_mean
    m.engine.generate("12+34=")                        # an Engine on the same device, made once

What a folder is decides how it opens: each family in FAMILIES says whether a folder is its own
(`claims`) and opens it (`open`) into the one shape of an opened model, OpenedModel. A run directory
has run.yaml; Huginn-0125, retrofitted Llama models (both `huginn_raven`, told apart by their
tensors) and Ouro folders have config.json (see recurlab.families); a plain Llama folder is refused
with the command that retrofits it. A new model family adds one entry there; every caller (CLI,
TUI, evaluation, benchmarks) then opens it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

import torch

from recurlab.checkpoint import load_model
from recurlab.config import ModelConfig, RunConfig, run_config
from recurlab.devices import check_device, resolve_device
from recurlab.engine.engine import Engine
from recurlab.errors import ModelFormatError
from recurlab.families import huginn, ouro, retrofit
from recurlab.families.common import FolderSpec
from recurlab.families.folder import folder_run_config, folder_tokenizer
from recurlab.families.tensors import DTYPE_NAMES, load_huginn_weights, load_mapped, resolve_dtype, shard_map
from recurlab.folders import folder_model_type, model_type
from recurlab.model import RecurrentLM
from recurlab.options.generate import DEVICE
from recurlab.rundir import Checkpoint, RunDir, RunError
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
    kind: str = "run"  # the family's name: run, huginn, ouro, retrofit

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
    def engine(self) -> Engine:
        return Engine(self.model, self.tokenizer, device=self.device)


class Family(Protocol):
    name: str
    model_type: str | None  # the config.json model_type it opens; None: not a Hugging Face folder

    def claims(self, path: Path) -> bool:
        """Whether `path` is a folder of this family (no torch, nothing but small files read)."""

    def open(self, path: Path | RunDir, device: str, dtype=None, step: int | None = None) -> OpenedModel:
        """The model in eval mode on `device` (resolved); one-line errors for what cannot open."""


class RunDirectory:
    """recurlab's own runs: run.yaml, the tokenizer saved in the run, a complete checkpoint."""

    name = "run"
    model_type = None

    def claims(self, path: Path) -> bool:
        return (Path(path) / "run.yaml").is_file()

    def open(self, path, device, dtype=None, step=None) -> OpenedModel:
        run = path if isinstance(path, RunDir) else RunDir(path)
        cfg = run_config(run)
        tokenizer = run_tokenizer(run)
        model, ckpt = load_model(run, step=step, device=device)
        if dtype is not None:
            model = model.to(resolve_dtype(dtype, torch.device(device)))
        return OpenedModel(model, tokenizer, cfg, device, f"{run.name} @ step {ckpt.step}", run.path, run=run,
                           checkpoint=ckpt)


@dataclass(frozen=True)
class ModelFolder:
    """A Hugging Face folder family: how it claims a folder, reads config.json and loads the weights."""

    name: str
    model_type: str
    hint: str  # where such folders come from (a download command), for error messages
    claims: Callable[[Path], bool]
    read: Callable[[Path], FolderSpec]
    load: Callable[[FolderSpec, torch.device, torch.dtype], RecurrentLM]

    def open(self, path, device, dtype=None, step=None) -> OpenedModel:
        spec = self.read(Path(path))
        dev = torch.device(device)
        tdtype = resolve_dtype(dtype, dev)
        shard_map(spec.path, self.hint)  # a missing or pickle-only weights file is reported before anything is loaded
        tok = folder_tokenizer(spec, self.hint)
        model = self.load(spec, dev, tdtype)
        cfg = folder_run_config(spec, tok, str(dev), DTYPE_NAMES.get(tdtype, str(tdtype)))
        return OpenedModel(model, tok, cfg, device, spec.path.name, spec.path, kind=self.name)


class LlamaFolder:
    """A plain Llama folder: recurlab retrofits it by training, and does not open it as a model."""

    name = "llama"
    model_type = "llama"

    def claims(self, path: Path) -> bool:
        return model_type(Path(path)) == "llama"

    def open(self, path, device, dtype=None, step=None) -> OpenedModel:
        raise ModelFormatError(
            f"{path} is a plain Llama model, not a looped one; convert it by retrofit training: "
            f"recurlab train --profile retrofit-tinyllama model.init_from={path}"
        )


def _ignore_inv_freq(name: str) -> bool:
    return name.endswith("rotary_emb.inv_freq")  # a rotary buffer some exports carry: recomputed, not read


def _mapped(family: str, plan: Callable[[ModelConfig], dict], hint: str):
    def load(spec: FolderSpec, dev: torch.device, tdtype: torch.dtype) -> RecurrentLM:
        return load_mapped(spec.path, spec.model, plan(spec.model), family, hint, dev, tdtype, ignore=_ignore_inv_freq)

    return load


RUN_DIRECTORY = RunDirectory()
FAMILIES: list[Family] = [
    RUN_DIRECTORY,
    ModelFolder("huginn", huginn.MODEL_TYPE, huginn.DOWNLOAD_HINT, huginn.claims, huginn.read_huginn_config,
                lambda spec, dev, tdtype: load_huginn_weights(spec.path, spec.model, dev, tdtype)),
    ModelFolder("retrofit", huginn.MODEL_TYPE, retrofit.DOWNLOAD_HINT, retrofit.claims, retrofit.read_retrofit_config,
                _mapped("retrofitted", retrofit.retrofit_plan, retrofit.DOWNLOAD_HINT)),
    ModelFolder("ouro", ouro.MODEL_TYPE, ouro.DOWNLOAD_HINT, ouro.claims, ouro.read_ouro_config,
                _mapped("Ouro", ouro.ouro_plan, ouro.DOWNLOAD_HINT)),
    LlamaFolder(),
]


def family_of(path: Path) -> Family:
    """The family whose folder `path` is; RunError or ModelFormatError with one line when none is."""
    if RUN_DIRECTORY.claims(path):
        return RUN_DIRECTORY
    if not path.is_dir():
        raise RunError(f"{path} does not exist or is not a folder; give a run directory or a model folder")
    if not (path / "config.json").is_file():
        raise RunError(f"{path} is neither a run directory (run.yaml) nor a Hugging Face model folder (config.json)")
    # a bad config.json or a model type no family opens: one line naming the types that open
    kind = folder_model_type(path, tuple(sorted({f.model_type for f in FAMILIES if f.model_type})))
    return next(f for f in FAMILIES if f.model_type == kind and f.claims(path))


def open_model(target: str | Path | RunDir, step: int | None = None, device: str = DEVICE, dtype=None) -> OpenedModel:
    """Open a run directory (run.yaml) or a model folder (config.json) on `device` (auto: CUDA if
    present); `dtype` casts a run's model and loads a folder's weights in it."""
    check_device(device)
    device = resolve_device(device)
    family = RUN_DIRECTORY if isinstance(target, RunDir) else family_of(Path(target))
    if step is not None and family is not RUN_DIRECTORY:
        raise RunError(f"{target} is a model folder, which has no checkpoints to choose with a step")
    return family.open(target if isinstance(target, RunDir) else Path(target), device, dtype=dtype, step=step)
