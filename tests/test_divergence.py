"""A run whose loss or weights become NaN or infinite stops as failed within one step: status failed
with one line naming the step and the last finite loss, its last checkpoint untouched, no checkpoint
written from broken weights, no non-finite metrics row."""

from __future__ import annotations

import json
import math

import pytest
import torch

from recurlab import train as train_mod
from recurlab.config import load_profile, to_yaml
from recurlab.rundir import RunDir
from recurlab.worker import run_worker

OVERRIDES = ["train.max_steps=8", "train.checkpoint_every=2", "train.eval_every=100", "train.keep_checkpoints=10"]


def checkpoint_bytes(run: RunDir) -> dict:
    return {str(p.relative_to(run.path)): p.read_bytes() for c in run.checkpoints() for p in sorted(c.path.rglob("*"))
            if p.is_file()}


def poison_after(monkeypatch, bad_step: int) -> None:
    """Step `bad_step`'s update leaves NaN in one weight, as an lr of inf would: its own loss (computed
    before the update) is finite, every later loss is not."""
    real = train_mod.Trainer.train_step

    def step(self, n):
        row = real(self, n)
        if n == bad_step:
            with torch.no_grad():
                next(self.model.parameters()).view(-1)[0] = float("nan")
        return row

    monkeypatch.setattr(train_mod.Trainer, "train_step", step)


@pytest.mark.parametrize("bad_step, stop_step, message", [
    # the update of step 5 breaks the weights; step 6's loss is NaN: the run stops there, before checkpointing 6
    (5, 6, "the loss is nan at step 6 (last finite loss {loss} at step 5); the last checkpoint (step_00000004) is intact"),
    # the update of step 4 breaks them, and step 4 is a checkpoint step: that checkpoint is not written
    (4, 4, "the weights became NaN or infinite in the update of step 4 (last finite loss {loss} at step 4); "
           "the last checkpoint (step_00000002) is intact"),
])
def test_non_finite_training_fails_at_once_and_keeps_the_checkpoint(tmp_path, monkeypatch, bad_step, stop_step, message):
    cfg = load_profile("tiny", OVERRIDES)
    run = RunDir.create(tmp_path / "runs", "nan", to_yaml(cfg))
    poison_after(monkeypatch, bad_step)
    saved = {}
    real_save = train_mod.Trainer.save

    def save(self, step):  # what the checkpoints hold after each save that completed
        real_save(self, step)
        saved.update(checkpoint_bytes(self.run))

    monkeypatch.setattr(train_mod.Trainer, "save", save)
    assert run_worker(run.path) == 1
    st = run.read_status()
    rows = run.read_metrics("train")
    assert [r["step"] for r in rows] == list(range(1, bad_step + 1)) and all(math.isfinite(r["loss"]) for r in rows)
    last = rows[-1]["loss"]
    assert st["state"] == "failed" and "\n" not in st["error"]
    assert message.format(loss=f"{last:.6g}") in st["error"], st["error"]
    assert st["step"] == bad_step and st["loss"] == last
    assert [c.step for c in run.checkpoints()] == [s for s in (2, 4) if s < stop_step]
    assert checkpoint_bytes(run) == saved  # untouched since written, byte for byte
    for c in run.checkpoints():  # and none holds a NaN
        from safetensors.torch import load_file

        assert all(bool(torch.isfinite(t).all()) for t in load_file(str(c.path / "model.safetensors")).values())


@pytest.mark.slow
def test_foreground_train_with_a_diverging_lr_fails_with_one_line(cli, runs_dir):
    """An lr of 1e30 is a valid number that sends the weights to inf in one update."""
    res = cli("train", "--profile", "tiny", "--runs-dir", runs_dir, "--name", "boom", "--foreground",
              "train.lr=1e30", "train.warmup_steps=0", "train.max_steps=20", timeout=300)
    assert res.returncode == 1, res.stdout + res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    run = RunDir(runs_dir / "boom")
    st = run.read_status()
    assert st["state"] == "failed" and st["error"].startswith("TrainingDiverged: the loss is") and "last finite loss" in st["error"]
    assert "TrainingDiverged: the loss is" in lines[0] and f"at step {st['step'] + 1}" in lines[0]
    assert run.checkpoints() == []  # the first checkpoint would have come at step 20
    assert all(math.isfinite(json.loads(line)["loss"]) for line in run.metrics_path.read_text().splitlines()
               if '"train"' in line)
