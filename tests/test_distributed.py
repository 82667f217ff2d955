"""Data-parallel (DDP) and sharded (FSDP) training under torchrun with gloo on CPU, end to end.

Two processes through the real CLI (`recurlab train --nproc 2`), stopped (stop file, SIGTERM to the
launcher, `stop --now`) and resumed with 2 and with 1 process. After every phase the saved
model.safetensors must equal a single-process run over the same global batches. micro_batch 4 of
16: each rank accumulates two micro-batches (DDP no_sync / FSDP without gradient sync), and the two
ranks together partition the batch as one process with four micro-batches does.
Every process a test starts is ended by pid at teardown.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from recurlab.checkpoint import read_state
from recurlab.config import ConfigError, load_profile, run_config
from recurlab.distributed import check_world_size, torchrun_command
from recurlab.rundir import RunDir, pid_alive
from recurlab.train import Trainer

pytestmark = pytest.mark.slow

PATIENCE_S = 180.0  # a hang guard on a loaded machine, not a speed requirement
TOL = 1e-5
# A run long enough that a stop always lands before its end (the tests shorten it before resuming).
# Three difficulties over 8 sequences per rank give the ranks different numbers of answer tokens, so
# a loss weighted per rank instead of over the global batch would show in the weights.
OVERRIDES = ["data.difficulties=2,3,4", "train.max_steps=2000", "train.micro_batch=4", "train.schedule=constant",
             "train.warmup_steps=2", "train.eval_every=100000", "train.checkpoint_every=100000", "train.log_every=1",
             "train.keep_checkpoints=50"]


def wait_for(predicate, what: str):
    deadline = time.time() + PATIENCE_S
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def processes_of(runs_dir: Path) -> list[int]:
    """Pids of every process whose command line names this test's runs directory (launcher, ranks)."""
    mark, pids = str(runs_dir).encode(), []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if mark in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


@pytest.fixture
def job_dir(runs_dir):
    """The runs directory; at teardown every process that names it is SIGKILLed by pid."""
    yield runs_dir
    for pid in processes_of(runs_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def env_one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def steps(run: RunDir) -> list[int]:
    return [r["step"] for r in run.read_metrics("train")]


def wait_state(run: RunDir, states: tuple[str, ...]) -> dict:
    wait_for(lambda: run.effective_state() in states, f"{run.name} to be {' or '.join(states)}")
    return run.read_status()


def set_train(run: RunDir, **values: int) -> None:
    """Edit train.* keys of run.yaml, as a user would between a stop and a resume."""
    text = run.config_path.read_text()
    for key, value in values.items():
        text = re.sub(rf"(?m)^(\s+{key}:) \d+$", rf"\g<1> {value}", text)
    run.config_path.write_text(text)
    cfg = run_config(run)
    assert all(getattr(cfg.train, k) == v for k, v in values.items())


def weights(run: RunDir, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(run.checkpoint_dir_for(step) / "model.safetensors"))


def max_diff(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def reference(run: RunDir, tmp: Path, last: int) -> RunDir:
    """One process, no wrapping, same config: a checkpoint after every step up to `last`."""
    cfg = run_config(run)
    cfg.hardware.fsdp = False
    cfg.train.max_steps, cfg.train.checkpoint_every, cfg.train.keep_checkpoints = last, 1, last + 1
    ref = RunDir.create(tmp, "reference", run.config_path.read_text(), device="cpu")
    Trainer(ref, cfg, "cpu").fit()
    return ref


def ranks_of(launcher: int, runs_dir: Path) -> list[int]:
    return [p for p in processes_of(runs_dir) if p != launcher]


def check_job_gone(launcher: int, ranks: list[int]) -> None:
    wait_for(lambda: not any(pid_alive(p) for p in [launcher, *ranks]), "the launcher and every rank to end")


def start(cli, job_dir: Path, name: str, *extra: str) -> tuple[RunDir, int, list[int]]:
    res = cli("train", "--profile", "tiny", "--runs-dir", job_dir, "--name", name, "--nproc", "2", *OVERRIDES, *extra,
              check=True)
    assert res.stdout.strip() == name
    run = RunDir(job_dir / name)
    wait_for(lambda: len(steps(run)) >= 3, f"{name} to train a few steps")
    st = run.read_status()
    launcher = st["pid"]
    ranks = ranks_of(launcher, job_dir)
    assert st["world_size"] == 2 and st["state"] == "running"
    assert len(ranks) == 2, ranks
    # the recorded pid is the torchrun launcher, the parent of both ranks
    assert all(int(Path(f"/proc/{r}/stat").read_text().rsplit(")", 1)[1].split()[1]) == launcher for r in ranks)
    return run, launcher, ranks


def resume(cli, job_dir: Path, run: RunDir, nproc: int) -> None:
    cli("resume", run.name, "--runs-dir", job_dir, "--nproc", str(nproc), check=True)


def finish_with_one_process(cli, job_dir: Path, run: RunDir, last: int) -> None:
    """Resume a checkpoint written by 2 processes with 1 and train to `last`."""
    set_train(run, max_steps=last)
    resume(cli, job_dir, run, 1)
    st = wait_state(run, ("finished", "failed"))
    assert st["state"] == "finished", (st, run.log_tail(30))
    assert st["step"] == last and st["world_size"] == 1
    assert read_state(run.checkpoint_dir_for(last))["world_size"] == 1
    assert steps(run) == list(range(1, last + 1))  # every step once: rows after a checkpoint were cut on resume


def test_ddp_matches_one_process_through_stop_kill_and_resume_with_2_and_1_processes(cli, job_dir, env_one_thread, tmp_path):
    run, launcher, ranks = start(cli, job_dir, "ddp")

    # graceful stop through the stop file: rank 0 sees it, every rank checkpoints the same step
    res = cli("stop", "ddp", "--runs-dir", job_dir, check=True)
    assert "stopped" in res.stdout
    check_job_gone(launcher, ranks)
    s1 = run.read_status()["step"]
    assert run.latest_checkpoint().step == s1 and read_state(run.checkpoint_dir_for(s1))["world_size"] == 2

    # resume with 2 processes; checkpoint once more, then `stop --now` kills the whole job
    # (torchrun puts the ranks in sessions of their own, so the launcher's group alone would not)
    s2 = s1 + 2
    set_train(run, checkpoint_every=s2)
    resume(cli, job_dir, run, 2)
    wait_for(lambda: run.latest_checkpoint().step == s2 and run.read_status().get("state") == "running", "a checkpoint")
    launcher = run.read_status()["pid"]
    ranks = ranks_of(launcher, job_dir)
    assert len(ranks) == 2
    res = cli("stop", "ddp", "--now", "--runs-dir", job_dir, check=True)
    assert "killed" in res.stdout
    check_job_gone(launcher, ranks)

    last = run.latest_checkpoint().step + 2  # s2, or a later one if the kill came late
    finish_with_one_process(cli, job_dir, run, last)

    ref = reference(run, tmp_path, last)
    saved = [c.step for c in run.checkpoints()]
    assert {s1, s2, last} <= set(saved)
    for step in saved:
        assert max_diff(weights(run, step), weights(ref, step)) < TOL, step
    assert max_diff(weights(ref, s1), weights(ref, last)) > 100 * TOL  # the comparison can tell steps apart


def test_fsdp_matches_one_process_through_sigterm_and_resume_with_2_and_1_processes(cli, job_dir, env_one_thread, tmp_path):
    pytest.importorskip("torch.distributed.fsdp", reason="this torch has no torch.distributed.fsdp")
    from torch.distributed import fsdp

    if not hasattr(fsdp, "fully_shard"):
        pytest.skip(f"torch {torch.__version__} has no fully_shard (FSDP2)")
    run, launcher, ranks = start(cli, job_dir, "fsdp", "hardware.fsdp=true")

    # SIGTERM to the launcher (what a scheduler sends): torchrun forwards it, the ranks stop together
    os.kill(launcher, signal.SIGTERM)
    st = wait_state(run, ("stopped", "failed"))
    assert st["state"] == "stopped", (st, run.log_tail(30))
    check_job_gone(launcher, ranks)
    s1 = st["step"]
    assert run.latest_checkpoint().step == s1

    # resume sharded with 2 processes (weights and optimizer moments loaded into shards), stop again
    s2 = s1 + 2
    set_train(run, checkpoint_every=s2)
    resume(cli, job_dir, run, 2)
    wait_for(lambda: run.latest_checkpoint().step == s2, "a checkpoint of the resumed job")
    cli("stop", "fsdp", "--runs-dir", job_dir, check=True)
    s3 = run.read_status()["step"]
    assert run.read_status()["state"] == "stopped" and run.latest_checkpoint().step == s3

    last = s3 + 2
    finish_with_one_process(cli, job_dir, run, last)

    ref = reference(run, tmp_path, last)
    saved = [c.step for c in run.checkpoints()]
    assert {s1, s2, s3, last} <= set(saved)
    for step in saved:
        assert max_diff(weights(run, step), weights(ref, step)) < TOL, step
    # the optimizer state is written in the single-process layout, so any reader or resume takes it
    opt = load_file(str(run.checkpoint_dir_for(s3) / "optimizer.safetensors"))
    assert max_diff(opt, load_file(str(ref.checkpoint_dir_for(s3) / "optimizer.safetensors"))) < TOL


def test_torchrun_command_for_one_and_several_machines():
    one = torchrun_command("/r/runs/x", nproc=8)
    assert one[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--standalone" in one and one[one.index("--nproc_per_node") + 1] == "8"
    assert one[-3:] == ["-m", "recurlab.worker", "/r/runs/x"]
    many = torchrun_command("/r/runs/x", nproc=4, nnodes=2, rdzv_endpoint="node0:29500", resume=True, device="cuda")
    assert "--standalone" not in many
    for flag, value in (("--nnodes", "2"), ("--rdzv_endpoint", "node0:29500"), ("--rdzv_backend", "c10d"), ("--rdzv_id", "x")):
        assert many[many.index(flag) + 1] == value
    assert many[-6:] == ["-m", "recurlab.worker", "/r/runs/x", "--resume", "--device", "cuda"]
    with pytest.raises(ConfigError, match="--rdzv-endpoint"):
        torchrun_command("/r/runs/x", nproc=4, nnodes=2)
    with pytest.raises(ConfigError, match="divisible by the number of processes"):
        check_world_size(load_profile("tiny"), 3)  # batch 16


def test_cli_rejects_a_batch_that_does_not_split_over_the_processes(cli, runs_dir):
    res = cli("train", "--profile", "tiny", "--runs-dir", runs_dir, "--name", "odd", "--nproc", "3")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        "error: train.batch_size (16) must be divisible by the number of processes (3); change train.batch_size or --nproc"
    ]
    assert not (runs_dir / "odd").exists()  # nothing created for a job that cannot start
