"""The model cache of the Inspector and Generate screens: each model opened once per (directory, checkpoint).

    cache = ModelCache()
    lm = cache.get(Path("runs/add-1"))     # in a worker thread: imports torch, opens the model
    lm.engine.generate("12+34=", GenerateOptions(r=8)); lm.model, lm.tokenizer, lm.cfg, lm.label

Opening goes through the engine's one door (`recurlab.engine.open_model`): a directory with
run.yaml is a run (its latest complete checkpoint), one with config.json a model folder;
anything else raises RunError with a one-line fix. No torch at import.
"""

from __future__ import annotations

import threading
from pathlib import Path

from recurlab.rundir import RunDir


def model_key(path: Path | None, step: int | None = None):
    """What identifies an opened model: the directory and, for runs, the checkpoint step (by
    default the latest: a screen that sees a newer checkpoint on return opens it)."""
    if path is None:
        return None
    if step is None:
        ck = RunDir(path).latest_checkpoint() if RunDir(path).exists() else None
        step = ck.step if ck else None
    return (str(Path(path).resolve()), step)


class ModelCache:
    KEEP = 2  # models kept in memory (the newest ones)

    def __init__(self):
        self._lock = threading.Lock()
        self._models: dict[tuple, object] = {}

    def get(self, path: Path, step: int | None = None):
        """The OpenedModel of `path` (a run: checkpoint `step`, the latest by default) on the best
        device here (CUDA if present), opened at most once."""
        from recurlab.engine import open_model  # torch and yaml: loaded only when this runs

        key = model_key(Path(path), step)
        with self._lock:
            if key not in self._models:
                self._models[key] = open_model(Path(path), step=step)  # its default device: CUDA when present
                while len(self._models) > self.KEEP:
                    self._models.pop(next(iter(self._models)))
            return self._models[key]


def heldout_examples(lm, per_level: int = 6) -> list[tuple[str, str]]:
    """(prompt, answer) pairs from the held-out set of the run's task; [] for text models."""
    if getattr(lm.cfg.data, "source", "") != "task":
        return []
    from recurlab.data import TaskData  # torch and yaml: loaded only when this runs

    data = TaskData(lm.cfg)
    out = []
    for level in data.eval_levels:
        out += [(ex.prompt, ex.answer) for ex in data.heldout(level)[:per_level]]
    return out
