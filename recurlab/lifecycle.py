"""Start, stop and resume training runs: every check and every signal, for the CLI and the TUI.

    plan = plan_run("runs", "tiny", ["train.max_steps=200"], name="smoke")  # checks; writes nothing
    run, pid = start_run(plan)                     # creates runs/smoke and starts a detached worker
    run = create_run(plan); state = train_foreground(run)   # `recurlab train --foreground`
    out = stop_run(run)                            # graceful: waits up to 30 s for "stopped"
    out = stop_run(run, wait=0)                    # graceful, returns at once (the TUI's s)
    out = stop_run(run, kill=True)                 # SIGKILL the worker's process group
    pid, ckpt = resume_run(run)                    # a detached worker from the last complete checkpoint

What can be checked before a run directory exists is checked before it exists: the profile and
overrides, the run name, the device (cuda asked for on a machine without it) and the data source
(local files that exist and hold text, a hub dataset that resolves). Each problem is a
user-facing error with one line (RunError, ConfigError, DataError, DeviceError). No torch is
imported here except to look for CUDA when a profile asks for it, and for torchrun lines.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from recurlab.config import RunConfig, read_profile, run_config, to_yaml, validate
from recurlab.devices import check_device
from recurlab.errors import CheckpointError
from recurlab.launch import spawn_worker
from recurlab.rundir import (
    ACTIVE_STATES, Checkpoint, RunDir, RunError, check_runs_dir, init_checkpoint, new_run_name, pid_alive, read_json,
)

GRACEFUL_STOP_WAIT_S = 30.0
KILL_WAIT_S = 10.0
POLL_S = 0.5
KILL_SETTLE_S = 2.0  # how long a waiting stop lets a killing stop write its status
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# ---- starting -------------------------------------------------------------------------------


@dataclass
class RunPlan:
    """A checked request for a new run: nothing is written until create_run."""

    runs_dir: Path
    name: str
    cfg: RunConfig
    device: str = ""  # a --device given for this run only ("" = the profile's)

    @property
    def path(self) -> Path:
        return self.runs_dir / self.name


def resolve_profile(profile: str, overrides: list[str] | None = None) -> RunConfig:
    """A new run's config: the profile with its overrides and, for a retrofit (model.init_from),
    the model shaped after the source folder's config.json, read once here so that the run's
    run.yaml stands alone; validated."""
    cfg = read_profile(profile, overrides)
    if cfg.model.init_from:
        from recurlab.families.retrofit import apply_init_from  # not at start-up: every command imports lifecycle

        apply_init_from(cfg)
    return validate(cfg)


def plan_run(runs_dir: str | Path, profile: str, overrides: list[str] | None = None, name: str | None = None,
             device: str = "") -> RunPlan:
    """Resolve and check a new run (profile, name, device, data source) without writing anything."""
    check_runs_dir(runs_dir)  # before Path(), which reads '' as the current folder
    overrides = list(overrides or [])
    if device:
        overrides.append(f"hardware.device={device}")
    cfg = resolve_profile(profile, overrides)
    if name is not None and not NAME_RE.match(name):
        raise RunError(f"--name {name!r}: use letters, digits, '.', '_' and '-', starting with a letter or digit")
    runs_dir = Path(runs_dir)
    if name is not None and (runs_dir / name).exists():
        raise RunError(f"run {name!r} already exists in {runs_dir}; pick another --name or resume it")
    check_device(cfg.hardware.device)
    check_data_source(cfg)
    if cfg.train.init_from:
        init_checkpoint(cfg.train.init_from)
        cfg.train.init_from = str(Path(cfg.train.init_from).resolve())  # the worker may start elsewhere
    if cfg.train.distill_from:
        from recurlab.distill import check_teacher  # imports torch: only when a teacher is named

        check_teacher(cfg)
        cfg.train.distill_from = str(Path(cfg.train.distill_from).resolve())
    return RunPlan(runs_dir, name or new_run_name(cfg.profile, runs_dir), cfg, device)


def check_data_source(cfg: RunConfig) -> None:
    """Raise DataError unless the run's data can be found: local files that hold text, a hub dataset
    that resolves (which fails at once without network or with HF_HUB_OFFLINE set and no cached copy)."""
    if cfg.data.source == "task":
        return  # generated in process; the task name is checked with the profile
    from recurlab.text.sources import check_source  # not at start-up: every command imports lifecycle

    check_source(cfg.data)


def create_run(plan: RunPlan) -> RunDir:
    """The run directory of a checked plan (run.yaml and a 'starting' status.json)."""
    try:
        return RunDir.create(plan.runs_dir, plan.name, to_yaml(plan.cfg), device=plan.cfg.hardware.device)
    except OSError as exc:  # --runs-dir is a file, read-only, ...
        raise RunError(f"cannot create run {plan.name!r} in {plan.runs_dir}: {exc.strerror}; pass a writable --runs-dir") from None


def start_run(plan: RunPlan, launch: list[str] | None = None) -> tuple[RunDir, int]:
    """Create the run directory and start its detached worker (or `launch`, its torchrun line)."""
    run = create_run(plan)
    return run, spawn_worker(run, resume=False, device=plan.device, launch=launch)


def train_foreground(run: RunDir, device: str = "") -> str:
    """Train in this process with a progress bar; returns the final state. A failure is logged with
    its traceback in worker.log and leaves the status 'failed' with its one-line error."""
    from recurlab.worker import run_worker  # not at start-up: every command imports lifecycle

    run_worker(run.path, resume=False, device=device, progress=True)
    return run.effective_state()


def torchrun_launch(run_path: Path, cfg: RunConfig, resume: bool, device: str, nproc: int, nnodes: int,
                    rdzv: str) -> list[str] | None:
    """The torchrun line for a multi-process run (None for one process), checked before any run starts."""
    if nproc == 1 and nnodes == 1 and not rdzv:
        return None
    from recurlab.distributed import check_world_size, torchrun_command  # imports torch

    check_world_size(cfg, nproc * nnodes)
    return torchrun_command(Path(run_path).resolve(), nproc, nnodes, rdzv, resume, device)


# ---- stopping -------------------------------------------------------------------------------


@dataclass
class StopOutcome:
    state: str  # the run's state when stop_run returned
    step: int | None = None
    checkpoint: str | None = None  # name of the last complete checkpoint
    killed: bool = False
    pid: int | None = None
    already_requested: bool = False  # wait=0: a graceful stop was pending already
    timed_out: bool = False  # the worker was still running when the wait ran out


def _is_worker(pid: int) -> bool:
    """Guard against pid reuse: only signal a process that is a recurlab worker or CLI."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid_alive(pid)  # no /proc (macOS): trust the pid
    return b"recurlab" in cmdline


def _kill(run: RunDir, status: dict, reason: str) -> StopOutcome:
    pid = status.get("pid")
    if status.get("host") not in (None, socket.gethostname()):
        raise RunError(f"run {run.name} runs on host {status.get('host')}; stop it there")
    if pid and pid_alive(pid) and _is_worker(pid):
        try:
            # the worker leads its own session, so its group holds any data-loader children too
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + KILL_WAIT_S
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    step = run.read_status().get("step")
    run.write_status(state="stopped", ended=time.time(), error=f"{reason} at step {step}; resume continues from the last checkpoint")
    run.clear_stop()
    ck = run.latest_checkpoint()
    return StopOutcome("stopped", step, ck.path.name if ck else None, killed=True, pid=pid)


def stop_run(run: RunDir, wait: float = GRACEFUL_STOP_WAIT_S, kill: bool = False, by: str = "`recurlab stop`",
             on_wait=None) -> StopOutcome:
    """Stop a run: graceful (the worker finishes its step, checkpoints and exits 'stopped'), waiting
    up to `wait` seconds (on_wait() is called once the request is written and the wait begins);
    `kill`, or a second stop while one is pending, SIGKILLs the worker's process group."""
    status = run.read_status()
    state = run.effective_state(status)
    if state not in ACTIVE_STATES and state != "lost":
        raise RunError(f"run {run.name} is not running (state: {state}); nothing to stop")
    if state == "lost" and not pid_alive(status.get("pid")) and status.get("host") in (None, socket.gethostname()):
        raise RunError(f"run {run.name} has no live worker here (status.json names no running pid, no heartbeat "
                       f"for a while); nothing to stop: resume it with `recurlab resume {run.name}`")
    if kill:
        return _kill(run, status, f"killed by {by}")
    if run.request_stop():
        if wait <= 0:
            return StopOutcome(state, status.get("step"), already_requested=True, pid=status.get("pid"))
        return _kill(run, status, f"killed by a second {by}")
    if wait <= 0:
        return StopOutcome(state, status.get("step"), pid=status.get("pid"))
    if on_wait is not None:
        on_wait()
    deadline = time.monotonic() + wait
    dead_since = None
    while time.monotonic() < deadline:
        status = run.read_status()
        state = run.effective_state(status)
        if state == "failed" and run.stop_requested():
            # a second stop kills the worker first and writes "stopped" just after: give it that moment
            dead_since = dead_since or time.monotonic()
            if time.monotonic() - dead_since < KILL_SETTLE_S:
                time.sleep(0.1)
                continue
        if state not in ACTIVE_STATES:
            return StopOutcome(state, status.get("step"), status.get("last_checkpoint"), pid=status.get("pid"))
        time.sleep(POLL_S)
    return StopOutcome(state, status.get("step"), status.get("last_checkpoint"), pid=status.get("pid"), timed_out=True)


# ---- resuming -------------------------------------------------------------------------------


def check_resumable(run: RunDir, how_to_stop: str = "`recurlab stop {name}`", device: str = "") -> None:
    """Raise a UserError unless the run can be resumed: no live worker, not finished, its latest
    checkpoint intact (state.json, safetensors that are not cut short) and the device present:
    checked here so that no worker is started to fail. A checkpoint that reached train.max_steps
    means finished whatever status.json says (it may be unreadable)."""
    status = run.read_status()
    state = run.effective_state(status)
    stop_hint = how_to_stop.format(name=run.name)
    if state in ACTIVE_STATES:
        raise RunError(f"run {run.name} is {state} (pid {status.get('pid')}); stop it first with {stop_hint}")
    if state == "lost" and status.get("host") == socket.gethostname() and pid_alive(status.get("pid")):
        raise RunError(f"run {run.name} has a live but silent worker (pid {status.get('pid')}); "
                       f"end it with `recurlab stop {run.name} --now`")
    if state == "finished":
        raise RunError(f"run {run.name} already finished at step {status.get('step')}; start a new run with `recurlab train`")
    cfg = run_config(run)
    ck = run.latest_checkpoint()
    if ck is not None:
        max_steps = cfg.train.max_steps
        state_json = read_json(ck.path / "state.json")
        step = state_json.get("step", ck.step) if isinstance(state_json, dict) else ck.step
        if isinstance(step, int) and step >= max_steps:
            raise RunError(f"run {run.name} already finished: its checkpoint {ck.path.name} reached train.max_steps="
                           f"{max_steps}; start a new run with `recurlab train`")
        problem = run.checkpoint_problem(ck)
        if problem:
            raise CheckpointError(f"run {run.name}: checkpoint {ck.path.name} is damaged: {problem}; move that folder "
                                  "out of checkpoints/ to resume from the one before it")
    check_device(device or cfg.hardware.device)


def resume_run(run: RunDir, device: str = "", launch: list[str] | None = None,
               how_to_stop: str = "`recurlab stop {name}`") -> tuple[int, Checkpoint | None]:
    """Start a detached worker that continues from the latest complete checkpoint; -> (pid, checkpoint)."""
    check_resumable(run, how_to_stop, device)
    run.clear_stop()
    run.write_status(state="starting", pid=None, heartbeat=time.time(), ended=None, error=None)
    pid = spawn_worker(run, resume=True, device=device, launch=launch)
    return pid, run.latest_checkpoint()
