"""Optional sinks of the worker's metric rows: TensorBoard event files and Weights & Biases.
metrics.jsonl stays the source of truth; a tracker gets a copy of each batch of rows right after
the worker has appended it there.

    hardware.trackers: [tensorboard, wandb]     # in a profile, or: recurlab train hardware.trackers=tensorboard,wandb
    pip install 'recurlab[track]'               # tensorboard and wandb
    tensorboard --logdir runs                   # every run's RUN/tensorboard/ folder

    trackers = Trackers.open(run, cfg, resumed_at=None, warn=log)   # rank 0 of the worker; a resume: its step
    trackers.log(rows); trackers.close()

TensorBoard: event files in RUN/tensorboard/; a train row's numeric fields become train/FIELD and
an eval row's eval/FIELD/r=R, at the row's step and wall time; the resolved config (flat keys) is
the run's hparams. A resume writes a new event file with purge_step at the checkpoint's next step
(step 1 without a checkpoint), so TensorBoard drops what the dead worker logged past the
checkpoint, as metrics.jsonl does.

W&B: files in RUN/wandb/; the W&B run id comes from the run's name and creation time, so a resume
continues the same W&B run; the config is the run.yaml; the project is hardware.wandb_project. It
runs offline (sync later with `wandb sync RUN/wandb/offline-run-*`) unless W&B is configured here:
WANDB_MODE set, or an API key in WANDB_API_KEY or ~/.netrc.

A tracker that cannot open (not installed, no network, a bad key) or that raises while logging
writes one warning line to worker.log and is dropped; the run goes on.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from pathlib import Path
from typing import Callable

from recurlab.rundir import RunDir

TB_DIR = "tensorboard"
INSTALL_HINT = "pip install 'recurlab[track]'"


def scalars(row: dict) -> dict[str, float]:
    """The tags and values a metric row becomes: train/FIELD, or eval/FIELD/r=R."""
    kind = row.get("kind")
    if kind not in ("train", "eval"):
        return {}
    suffix = f"/r={row.get('r')}" if kind == "eval" else ""
    out = {}
    for key, value in row.items():
        if key in ("kind", "step", "time", "r") or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[f"{kind}/{key}{suffix}"] = float(value)
    return out


def hparams_of(cfg_dict: dict) -> dict:
    """The resolved config as flat hparams (section.key) of the types TensorBoard accepts."""
    out = {}
    for top, value in cfg_dict.items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for key, v in items:
            name = top if key is None else f"{top}.{key}"
            if isinstance(v, (list, tuple)):
                v = ",".join(map(str, v))
            out[name] = v if isinstance(v, (bool, int, float, str)) else ("" if v is None else str(v))
    return out


class TensorBoardSink:
    def __init__(self, run: RunDir, cfg, resumed_at: int | None):
        # torch's writer needs the tensorboard package; imported only for runs that ask for it
        from torch.utils.tensorboard import SummaryWriter

        purge = None if resumed_at is None else resumed_at + 1
        self.writer = SummaryWriter(log_dir=str(run.path / TB_DIR), purge_step=purge)
        self._end = None
        if resumed_at is None:  # the first worker states the hparams; a resume's file continues them
            from torch.utils.tensorboard.summary import hparams

            exp, ssi, sei = hparams(hparams_of(cfg.to_dict()), {"train/loss": 0.0})
            for summary in (exp, ssi):
                self.writer.file_writer.add_summary(summary)
            self._end = sei

    def log(self, rows: list[dict]) -> None:
        for row in rows:
            step, walltime = int(row.get("step", 0)), row.get("time")
            for tag, value in scalars(row).items():
                self.writer.add_scalar(tag, value, global_step=step, walltime=walltime)
        self.writer.flush()

    def close(self) -> None:
        if self._end is not None:
            self.writer.file_writer.add_summary(self._end)
        self.writer.close()


def wandb_configured() -> bool:
    """Whether the user set W&B up on this machine (else recurlab runs it offline)."""
    if os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return "api.wandb.ai" in (Path.home() / ".netrc").read_text()
    except OSError:
        return False


def wandb_id(run: RunDir, created) -> str:
    """A W&B run id that every worker of this run derives alike (and a copy elsewhere too)."""
    digest = hashlib.sha1(f"{run.name}:{created}".encode()).hexdigest()[:10]
    return f"{re.sub(r'[^A-Za-z0-9_-]', '-', run.name)[:50]}-{digest}"


class WandbSink:
    def __init__(self, run: RunDir, cfg, resumed_at: int | None):
        import wandb  # optional and slow to import: only for runs that ask for it

        self.wandb = wandb
        self.pending: dict[str, float] = {}
        self.pending_step: int | None = None
        self.run = wandb.init(
            project=cfg.hardware.wandb_project, id=wandb_id(run, run.status_snapshot().get("created")), name=run.name,
            dir=str(run.path), resume="allow", config=cfg.to_dict(), mode=None if wandb_configured() else "offline",
            settings=wandb.Settings(console="off", silent=True),
        )

    def log(self, rows: list[dict]) -> None:
        # one wandb.log per step: W&B's step only moves forward, and eval rows share their train row's step
        for row in rows:
            step = int(row.get("step", 0))
            if self.pending_step is not None and step != self.pending_step:
                self.run.log(self.pending, step=self.pending_step)
                self.pending = {}
            self.pending_step = step
            self.pending.update(scalars(row))

    def close(self) -> None:
        if self.pending:
            self.run.log(self.pending, step=self.pending_step)
        self.run.finish()


SINKS: dict[str, Callable] = {"tensorboard": TensorBoardSink, "wandb": WandbSink}


def _why(exc: BaseException) -> str:
    msg = str(exc).splitlines()[0] if str(exc) else ""
    hint = f"; {INSTALL_HINT}" if isinstance(exc, ImportError) else ""
    return f"{type(exc).__name__}: {msg}{hint}"


class Trackers:
    """The open sinks of one worker; each failure drops its sink with one warning line."""

    def __init__(self, sinks: dict, warn: Callable[[str], None]):
        self.sinks, self.warn = sinks, warn

    @classmethod
    def open(cls, run: RunDir, cfg, resumed_at: int | None, warn: Callable[[str], None]) -> "Trackers":
        """The sinks of cfg.hardware.trackers; `resumed_at`: the step a resumed worker starts after
        (0 without a checkpoint), None for a run's first worker."""
        sinks = {}
        for name in cfg.hardware.trackers:
            try:
                sinks[name] = SINKS[name](run, cfg, resumed_at)
            except Exception as exc:  # any failure of an optional sink must leave the run going
                warn(f"warning: tracker {name} could not start and is dropped ({_why(exc)}); metrics.jsonl has every row")
        return cls(sinks, warn)

    def log(self, rows: list[dict]) -> None:
        for name, sink in list(self.sinks.items()):
            try:
                sink.log(rows)
            except Exception as exc:
                del self.sinks[name]
                self.warn(f"warning: tracker {name} failed and is dropped ({_why(exc)}); metrics.jsonl has every row")
                try:
                    sink.close()
                except Exception:  # already broken: its one warning has been written
                    pass

    def close(self) -> None:
        for name, sink in list(self.sinks.items()):
            try:
                sink.close()
            except Exception as exc:
                self.warn(f"warning: tracker {name} failed while closing ({_why(exc)})")
        self.sinks = {}
