"""Models for the Inspector and Generate screens, loaded once per (directory, checkpoint).

    cache = ModelCache()
    lm = cache.get(Path("runs/add-1"))     # in a worker thread: imports torch, loads weights
    lm.engine.generate("12+34=", GenerateOptions(r=8)); lm.model, lm.tokenizer, lm.cfg, lm.label

A directory with run.yaml is a run (its latest complete checkpoint); one with config.json is a
Huginn-format model folder. Anything else raises RunError with a one-line fix.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from recurlab.rundir import RunDir, RunError

# one example setting per exit criterion of the engine, offered by the Inspector and Generate screens
EXIT_CRITERIA = ("kl:5e-4", "entropy:1e-3", "latent:1e-2", "argmax:3", "cosine:0.999")


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    cfg: object
    engine: object
    label: str
    device: str

    @property
    def r_mean(self) -> int:
        return int(getattr(self.cfg.train, "r_mean", 8) or 8)


def model_key(path: Path | None):
    """What identifies a loaded model: the directory and, for runs, the latest checkpoint step
    (a screen that sees a newer checkpoint on return loads it)."""
    if path is None:
        return None
    ck = RunDir(path).latest_checkpoint() if RunDir(path).exists() else None
    return (str(Path(path).resolve()), ck.step if ck else None)


class ModelCache:
    KEEP = 2  # models kept in memory (the newest ones)

    def __init__(self):
        self._lock = threading.Lock()
        self._models: dict[tuple, LoadedModel] = {}

    def get(self, path: Path) -> LoadedModel:
        path = Path(path)
        run = RunDir(path)
        if run.exists():
            ck = run.latest_checkpoint()
            key = (str(path.resolve()), ck.step if ck else None)
        elif (path / "config.json").exists():
            key = (str(path.resolve()), "huginn")
        else:
            raise RunError(f"{path} is neither a run directory (run.yaml) nor a Huginn model folder (config.json)")
        with self._lock:
            if key not in self._models:
                self._models[key] = self._load(path, run)
                while len(self._models) > self.KEEP:
                    self._models.pop(next(iter(self._models)))
            return self._models[key]

    def _load(self, path: Path, run: RunDir) -> LoadedModel:
        from recurlab.devices import resolve_device
        from recurlab.engine import Engine

        device = resolve_device("auto")
        if run.exists():
            from recurlab.engine import open_run

            model, tok, cfg, ckpt = open_run(run, device=device)
            label = f"{run.name} @ step {ckpt.step}"
        else:
            from recurlab.huginn import open_huginn

            model, tok, cfg = open_huginn(path, device=device)
            label = path.name
        return LoadedModel(model, tok, cfg, Engine(model, tok, device=device), label, device)


def heldout_examples(lm: LoadedModel, per_level: int = 6) -> list[tuple[str, str]]:
    """(prompt, answer) pairs from the held-out set of the run's task; [] for text models."""
    if getattr(lm.cfg.data, "source", "") != "task":
        return []
    from recurlab.data import TaskData

    data = TaskData(lm.cfg)
    out = []
    for level in data.eval_levels:
        out += [(ex.prompt, ex.answer) for ex in data.heldout(level)[:per_level]]
    return out
