"""Nothing lost: the worker owns its status, torn metrics are repaired, checkpoints are durable
against a power loss, and every file a run writes honours the umask."""

from __future__ import annotations

import json
import os
import shutil
import stat
import time

import pytest
import torch

from recurlab import checkpoint as ckpt_mod
from recurlab.checkpoint import remove_stale_temporaries, save_checkpoint
from recurlab.config import load_profile, to_yaml
from recurlab.rundir import RunDir, atomic_write_text, pid_alive
from recurlab.train import train


def make_run(tmp_path, name="a", overrides=()):
    cfg = load_profile("tiny", list(overrides))
    return RunDir.create(tmp_path / "runs", name, to_yaml(cfg)), cfg


# ---- 1. the writer keeps its status in memory --------------------------------------------

def test_the_status_writer_rewrites_a_garbled_file_whole(tmp_path):
    run, _ = make_run(tmp_path)
    run.own_status(state="running", pid=os.getpid(), max_steps=100)
    run.status_path.write_text("garbage{{\n")
    assert run.read_status() == {}
    run.write_status(step=7)
    st = run.read_status()
    assert st["state"] == "running" and st["pid"] == os.getpid() and st["name"] == "a"
    assert st["max_steps"] == 100 and st["step"] == 7 and st["contract"] == 2
    # a reader-side update (the CLI marking a dead worker) still merges into what is on disk
    other = RunDir(run.path)
    other.write_status(error="x")
    assert other.read_status()["state"] == "running" and other.read_status()["error"] == "x"


def test_a_new_status_writer_keeps_the_step_the_run_reached(tmp_path):
    """A resumed worker that fails before its checkpoint loads must leave "failed at step 40", not 0."""
    run, _ = make_run(tmp_path)
    run.write_status(state="stopped", step=40, tokens=2560, loss=1.5, last_checkpoint="step_00000040")
    run.own_status(state="starting", pid=os.getpid())
    run.write_status(state="failed", error="CheckpointError: ...")
    st = run.read_status()
    assert (st["state"], st["step"], st["tokens"], st["loss"], st["last_checkpoint"]) == (
        "failed", 40, 2560, 1.5, "step_00000040")


@pytest.mark.slow
def test_a_garbled_status_does_not_strip_a_live_worker_of_its_state(cli, runs_dir):
    cli("train", "--profile", "tiny", "--runs-dir", runs_dir, "--name", "g", "train.max_steps=100000", check=True)
    run = RunDir(runs_dir / "g")
    pid = run.read_status()["pid"]
    deadline = time.monotonic() + 180
    while run.read_status().get("state") != "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    run.status_path.write_text("garbage{{\n")
    # the next heartbeat (every ~2 s) rewrites the whole status from the worker's memory
    while run.read_status().get("state") != "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    st = run.read_status()
    assert st.get("state") == "running" and st.get("pid") == pid and st.get("name") == "g", st
    res = cli("stop", "g", "--runs-dir", runs_dir)
    assert res.returncode == 0, res.stderr
    assert run.read_status()["state"] == "stopped"
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(pid)


# ---- 3. a torn metrics line ----------------------------------------------------------------

def test_resume_repairs_a_torn_metrics_line(tmp_path):
    run, _ = make_run(tmp_path)
    run.append_metrics([{"kind": "train", "step": s, "time": 0} for s in range(1, 6)])
    with open(run.metrics_path, "a") as f:
        f.write('{"kind": "train", "st')  # the worker died mid-append, after checkpointing step 5
    run.truncate_metrics_after(5)  # nothing past the checkpoint: only the torn tail to repair
    run.append_metrics([{"kind": "train", "step": 6, "time": 0}])
    assert [r["step"] for r in run.read_metrics()] == [1, 2, 3, 4, 5, 6]
    assert run.metrics_path.read_text().endswith("\n")


def test_resume_of_a_real_run_after_a_torn_line_keeps_every_step(tmp_path):
    run, cfg = make_run(tmp_path, overrides=["train.max_steps=6", "train.checkpoint_every=3"])
    train(run, cfg, device="cpu")
    shutil.rmtree(run.checkpoint_dir_for(6))  # as if killed after appending step 6's rows
    with open(run.metrics_path, "a") as f:
        f.write('{"kind": "train", "step": 7, "lo')
    train(run, cfg, device="cpu", resume=True)
    assert [r["step"] for r in run.read_metrics("train")] == [1, 2, 3, 4, 5, 6]


# ---- 4. checkpoints durable against a power loss ---------------------------------------------

def test_checkpoint_files_and_directories_are_fsynced_before_pruning(tmp_path, monkeypatch):
    run, _ = make_run(tmp_path)
    events = []
    real_fsync, real_rmtree = os.fsync, shutil.rmtree

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def rmtree(path, *a, **kw):
        events.append(("rmtree", str(path)))
        return real_rmtree(path, *a, **kw)

    weights = {"w": torch.ones(3)}
    opt = ({"0.exp_avg": torch.zeros(3)}, {"param_groups": [], "state": {}})
    for step in (1, 2):
        save_checkpoint(run, step, weights, opt, {"tokens": 0}, keep=1)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(ckpt_mod.shutil, "rmtree", rmtree)
    final = save_checkpoint(run, 3, weights, opt, {"tokens": 0}, keep=1)
    tmp = str(final.with_name(".tmp-" + final.name))
    synced = [p for kind, p in events if kind == "fsync"]
    for name in ("model.safetensors", "optimizer.safetensors", "optimizer.json"):
        assert f"{tmp}/{name}" in synced, (name, synced)
    assert any(p.startswith(f"{tmp}/.state.json.") for p in synced)  # synced under its temp name, then renamed
    assert tmp in synced  # the directory's entries
    parent = str(run.checkpoints_dir.resolve())
    assert parent in synced  # the rename
    prune = events.index(("rmtree", str(run.checkpoint_dir_for(2))))
    assert events.index(("fsync", parent)) < prune
    assert [c.step for c in run.checkpoints()] == [3]


def test_resume_removes_a_stale_temporary_checkpoint(tmp_path):
    run, cfg = make_run(tmp_path, overrides=["train.max_steps=4", "train.checkpoint_every=2"])
    train(run, cfg, device="cpu")
    torn = run.checkpoints_dir / ".tmp-step_00000010"
    torn.mkdir()
    (torn / "model.safetensors").write_bytes(b"\0" * 16)
    assert remove_stale_temporaries(run) == [torn] and not torn.exists()
    torn.mkdir()
    shutil.rmtree(run.checkpoint_dir_for(4))
    (run.path / "status.json").write_text(json.dumps({"state": "failed"}))
    train(run, cfg, device="cpu", resume=True)
    assert not torn.exists()
    assert [c.step for c in run.checkpoints()][-1] == 4


# ---- 5. the umask ----------------------------------------------------------------------------

def test_run_files_honour_the_umask(tmp_path):
    """0666 less the umask: with 002, group-writable 0664 (no file may hard-code 0644 or 0600)."""
    old = os.umask(0o002)
    try:
        run, cfg = make_run(tmp_path, overrides=["train.max_steps=2", "train.checkpoint_every=2"])
        train(run, cfg, device="cpu")
        from recurlab.engine import open_model, run_sweep

        res = run_sweep(open_model(run, device="cpu"), rs=[1])
        atomic_write_text(tmp_path / "plain.txt", "x")
    finally:
        os.umask(old)
    ckpt = run.latest_checkpoint().path
    paths = [run.config_path, run.status_path, run.vocab_path, run.metrics_path, res.path, res.path.with_suffix(".json"),
             ckpt / "state.json", ckpt / "model.safetensors", ckpt / "optimizer.safetensors", ckpt / "optimizer.json",
             tmp_path / "plain.txt"]
    for p in paths:
        assert stat.S_IMODE(p.stat().st_mode) == 0o664, (p, oct(p.stat().st_mode))
