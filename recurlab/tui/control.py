"""Start, stop and resume training runs from the TUI, the way `recurlab train/stop/resume` do.

    run = start_run("runs", "tiny", ["train.max_steps=200"])   # creates the run, spawns the worker
    stop_run(run)        # graceful: the worker checkpoints and exits "stopped"
    resume_run(run)      # a detached worker with --resume

The worker is `python -m recurlab.worker RUN_DIR` in its own session (it outlives the TUI), with
stdout and stderr appended to worker.log. Problems raise RunError with one line for a notice.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from recurlab.launch import spawn_worker
from recurlab.rundir import ACTIVE_STATES, RunDir, RunError, new_run_name, pid_alive


def start_run(runs_dir: str | Path, profile: str, overrides: list[str] | None = None, name: str | None = None) -> RunDir:
    """Create a run directory from a profile and start its worker (raises ConfigError/RunError)."""
    from recurlab.config import load_profile, to_yaml

    cfg = load_profile(profile, list(overrides or []))
    run = RunDir.create(runs_dir, name or new_run_name(cfg.profile, runs_dir), to_yaml(cfg), device=cfg.hardware.device)
    spawn_worker(run)
    return run


def stop_run(run: RunDir) -> str:
    """Request a graceful stop; returns a one-line notice."""
    state = run.effective_state()
    if state not in ACTIVE_STATES and state != "lost":
        raise RunError(f"run {run.name} is not running (state: {state}); nothing to stop")
    if run.request_stop():
        return f"{run.name}: stop already requested; `recurlab stop {run.name} --now` kills it"
    return f"{run.name}: stop requested; the worker checkpoints and exits"


def resume_run(run: RunDir) -> int:
    status = run.read_status()
    state = run.effective_state(status)
    if state in ACTIVE_STATES:
        raise RunError(f"run {run.name} is {state}; stop it first (key s)")
    if state == "lost" and status.get("host") == socket.gethostname() and pid_alive(status.get("pid")):
        raise RunError(f"run {run.name} has a live but silent worker (pid {status.get('pid')}); end it with `recurlab stop {run.name} --now`")
    if state == "finished":
        raise RunError(f"run {run.name} already finished at step {status.get('step')}; start a new run (key n)")
    run.clear_stop()
    run.write_status(state="starting", pid=None, heartbeat=time.time(), ended=None, error=None)
    return spawn_worker(run, resume=True)
