"""Trackers: TensorBoard event files hold metrics.jsonl's scalars (read back with TensorBoard's own
reader), a resume continues them without duplicates, W&B writes its offline files, and a tracker
that raises is dropped with one warning while the run goes on. Tiny runs, in this process."""

from __future__ import annotations

import shutil

import pytest

from recurlab import trackers
from recurlab.config import load_profile, to_yaml
from recurlab.rundir import RunDir
from recurlab.train import train
from recurlab.trackers import scalars

STEPS = ["train.max_steps=12", "train.eval_every=6", "train.checkpoint_every=6", "train.log_every=1",
         "train.keep_checkpoints=3", "data.eval_examples=8"]


def new_run(tmp_path, extra):
    cfg = load_profile("tiny", STEPS + extra)
    return RunDir.create(tmp_path / "runs", "t", to_yaml(cfg)), cfg


def expected_scalars(run):
    out: dict[str, list[tuple[int, float]]] = {}
    for row in run.read_metrics():
        for tag, value in scalars(row).items():
            out.setdefault(tag, []).append((int(row["step"]), value))
    return out


def tensorboard_scalars(path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
    acc.Reload()
    return acc, {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def assert_same(got, want):
    assert sorted(got) == sorted(want)
    for tag, points in want.items():
        assert [s for s, _ in got[tag]] == [s for s, _ in points], tag
        # event files hold float32 scalars
        assert [v for _, v in got[tag]] == pytest.approx([v for _, v in points], rel=1e-6, abs=1e-30), tag


def test_tensorboard_event_files_hold_the_metrics_and_resume_continues(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra (pip install 'recurlab[track]') is not installed")
    run, cfg = new_run(tmp_path, ["hardware.trackers=tensorboard"])
    assert train(run, cfg, device="cpu") == "finished"
    want = expected_scalars(run)
    assert {"train/loss", "train/lr", "eval/loss/r=1", "eval/acc/r=4"} <= set(want)
    acc, got = tensorboard_scalars(run.path / "tensorboard")
    assert_same(got, want)
    assert acc.PluginTagToContent("hparams")  # the config went in as hparams

    # a worker that died after step 12 was logged but before its checkpoint: resume from step 6
    shutil.rmtree(run.checkpoint_dir_for(12))
    run.write_status(state="stopped")
    before = expected_scalars(run)
    assert train(run, cfg, device="cpu", resume=True) == "finished"
    want = expected_scalars(run)
    assert [s for s, _ in want["train/loss"]] == list(range(1, 13))  # metrics.jsonl: no step twice
    assert want["train/loss"][:6] == before["train/loss"][:6]
    _, got = tensorboard_scalars(run.path / "tensorboard")
    assert len(list((run.path / "tensorboard").glob("events.out.tfevents.*"))) == 2  # one event file per worker
    assert_same(got, want)  # TensorBoard purged the first worker's steps 7-12: the resumed ones replace them


class Raising:
    def __init__(self, run, cfg, resumed_at):
        pass

    def log(self, rows):
        raise RuntimeError("disk quota exceeded")

    def close(self):
        pass


class CannotOpen:
    def __init__(self, run, cfg, resumed_at):
        raise ImportError("No module named 'wandb'")


def test_a_raising_tracker_is_dropped_and_the_run_goes_on(tmp_path, monkeypatch):
    monkeypatch.setitem(trackers.SINKS, "tensorboard", Raising)
    monkeypatch.setitem(trackers.SINKS, "wandb", CannotOpen)
    run, cfg = new_run(tmp_path, ["hardware.trackers=tensorboard,wandb"])
    assert train(run, cfg, device="cpu") == "finished"
    assert [r["step"] for r in run.read_metrics("train")] == list(range(1, 13))
    warnings = [line for line in run.log_path.read_text().splitlines() if "warning: tracker" in line]
    assert len(warnings) == 2, warnings
    assert "tracker wandb could not start" in warnings[0] and "pip install 'recurlab[track]'" in warnings[0]
    assert "tracker tensorboard failed and is dropped (RuntimeError: disk quota exceeded)" in warnings[1]
    assert run.read_status()["state"] == "finished"


def test_an_unknown_tracker_is_refused_before_a_run_exists(cli, tmp_path):
    res = cli("train", "--profile", "tiny", "--runs-dir", tmp_path / "runs", "hardware.trackers=tensorboard,mlflow")
    assert res.returncode == 2 and res.stderr.startswith("error: hardware.trackers: 'mlflow' is not one of")
    assert not (tmp_path / "runs").exists()


def test_the_worker_records_its_environment(tmp_path):
    import torch

    from recurlab import environment

    cfg = load_profile("tiny", ["train.max_steps=1", "data.eval_examples=8"])
    run = RunDir.create(tmp_path / "runs", "env", to_yaml(cfg))
    assert environment.read(run) == {}
    assert ("note", "no environment.json: the run was trained before recurlab recorded it") in environment.describe(run)
    assert train(run, cfg, device="cpu") == "finished"
    env = environment.read(run)
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and env["threads"] == cfg.hardware.threads == 1
    commit, _dirty = environment.git_commit()
    assert env["recurlab_commit"] == commit  # this checkout's HEAD, or None for an installed package


def test_wandb_writes_offline_files_and_a_resume_keeps_the_run_id(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed (pip install 'recurlab[track]'): W&B offline files untested")
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_DIR", "WANDB_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc: recurlab picks offline mode
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "home" / "wandb-config"))
    run, cfg = new_run(tmp_path, ["hardware.trackers=wandb"])
    rows = [{"kind": "train", "step": 1, "time": 1.0, "loss": 2.5}, {"kind": "eval", "step": 1, "time": 1.0, "r": 4, "loss": 2.0},
            {"kind": "train", "step": 2, "time": 2.0, "loss": 2.25}]
    for resumed_at in (None, 2):  # a first worker, then a resumed one
        sink = trackers.WandbSink(run, cfg, resumed_at)
        sink.log(rows if resumed_at is None else [{"kind": "train", "step": 3, "time": 3.0, "loss": 2.0}])
        sink.close()
    folders = sorted((run.path / "wandb").glob("offline-run-*"))
    assert len(folders) == 2 and all(list(f.glob("*.wandb")) for f in folders)
    run_id = trackers.wandb_id(run, run.read_status()["created"])
    assert all(f.name.endswith(run_id) for f in folders)  # the same W&B run, continued
