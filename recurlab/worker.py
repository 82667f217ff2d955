"""The training worker: one process (or one torchrun rank) that owns a run directory.

    python -m recurlab.worker runs/cpu-1122-101500            # started detached by `recurlab train`
    python -m recurlab.worker runs/cpu-1122-101500 --resume   # `recurlab resume`

It marks the run running, trains, and leaves the status finished, stopped or failed (with the
error's last line). SIGTERM and SIGINT are turned into a graceful stop: finish the step,
checkpoint, exit "stopped". Log lines go to worker.log; recurlab.launch points the stdout and
stderr of a detached worker there as well, so a crash's traceback ends up in the same file. A
failure's traceback always goes to worker.log; in the foreground the CLI prints one line.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
import traceback
from pathlib import Path

# Under torchrun the parent is the launcher, the process whose life is the job's; read before the
# slow imports below so that a launcher dying meanwhile is noticed, not mistaken for another parent.
LAUNCHER_PID = os.getppid() if os.environ.get("TORCHELASTIC_RUN_ID") else None

from recurlab.config import run_config  # noqa: E402
from recurlab.rundir import RunDir  # noqa: E402


class WorkerLog:
    def __init__(self, run: RunDir, echo: bool):
        self.run, self.echo = run, echo

    def __call__(self, msg: str, echo: bool = True) -> None:
        line = self.run.append_log(msg)
        if self.echo and echo:
            sys.stdout.write(line)
            sys.stdout.flush()


class ProgressBar:
    """Training progress for the foreground: rich's live bar on a terminal; on a pipe or a file, a
    plain line at every tenth of the way, so that a log stays readable. With a time budget,
    progress is whichever of steps and minutes runs out first."""

    PLAIN_EVERY = 0.1

    def __init__(self, total: int, budget_s: float = 0.0, stream=None):
        self.total, self.budget_s, self.start = total, budget_s, time.time()
        self.stream = stream or sys.stderr
        self.next_plain = 0.0
        self.live = None
        if self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.live = Progress(TextColumn("step {task.fields[step]}/{task.fields[total_steps]}"), BarColumn(),
                                 TextColumn("loss {task.fields[loss]}"), TextColumn("eta"), TimeRemainingColumn(),
                                 console=Console(file=self.stream), transient=False)
            self.task = self.live.add_task("train", total=1.0, step=0, total_steps=total, loss="-")
            self.live.start()

    def fraction(self, step: int) -> float:
        frac = step / self.total
        if self.budget_s:
            frac = max(frac, (time.time() - self.start) / self.budget_s)
        return min(frac, 1.0)

    def __call__(self, step: int, total: int, loss: float | None) -> None:
        frac, loss_s = self.fraction(step), (f"{loss:.4f}" if loss is not None else "-")
        if self.live is not None:
            self.live.update(self.task, completed=frac, step=step, loss=loss_s)
        elif frac >= self.next_plain or step == total:
            eta = (time.time() - self.start) / max(frac, 1e-9) * (1 - frac)
            self.stream.write(f"step {step}/{total} ({frac:.0%}) loss {loss_s} eta {eta:.0f}s\n")
            self.stream.flush()
            self.next_plain = frac + self.PLAIN_EVERY

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def run_worker(run_dir: str | Path, resume: bool = False, device: str = "", progress: bool = False) -> int:
    """Train the run in this process; returns the exit code (0 finished/stopped, 1 failed)."""
    run = RunDir(run_dir)
    rank = int(os.environ.get("RANK", "0"))
    log = WorkerLog(run, echo=progress)
    cfg = run_config(run)

    def on_signal(signum, frame):
        if signum == signal.SIGINT and progress:
            # Ctrl-C in the foreground: the first asks for a graceful stop, a second one aborts
            signal.signal(signal.SIGINT, signal.default_int_handler)
            sys.stderr.write("\nstopping after this step (checkpoint); Ctrl-C again to abort\n")
        if rank == 0:
            run.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if LAUNCHER_PID is not None:
        from recurlab.distributed import follow_launcher  # torch: loaded only when this runs

        follow_launcher(LAUNCHER_PID)
    if rank == 0:
        # from here on this process keeps the status in memory and rewrites status.json whole
        run.own_status(state="starting", pid=LAUNCHER_PID or os.getpid(), host=socket.gethostname(), started=time.time(),
                       heartbeat=time.time(), ended=None, error=None)
        log(f"worker pid {os.getpid()} {'resuming' if resume else 'starting'} run {run.name} (profile {cfg.profile})")
    try:
        import torch  # noqa: F401  (imported here so a broken install fails inside the try)

        from recurlab.train import train  # torch and numpy: loaded only when this runs

        bar = ProgressBar(cfg.train.max_steps, budget_s=60 * cfg.train.max_minutes) if progress and rank == 0 else None
        try:
            outcome = train(run, cfg, device=device or cfg.hardware.device, resume=resume, progress_bar=bar, log=log)
        finally:
            if bar is not None:
                bar.close()
    except KeyboardInterrupt:
        if rank == 0:
            log("worker aborted by a second Ctrl-C; resume continues from the last complete checkpoint")
            run.write_status(state="stopped", error="aborted with Ctrl-C", ended=time.time(), heartbeat=time.time())
        return 130
    except Exception as exc:
        if rank == 0:
            summary = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            log("worker failed:\n" + traceback.format_exc(), echo=False)  # the foreground CLI prints one line
            run.write_status(state="failed", error=summary, ended=time.time(), heartbeat=time.time())
        else:  # stderr of every rank goes to the launcher's, which is worker.log for detached runs
            sys.stderr.write(f"rank {rank} failed:\n{traceback.format_exc()}")
        return 1
    if rank == 0:
        status = run.status_snapshot()
        log(f"worker {outcome} at step {status.get('step')} (last checkpoint {status.get('last_checkpoint')})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recurlab.worker", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--device", default="")
    args = parser.parse_args(argv)
    return run_worker(args.run_dir, resume=args.resume, device=args.device)


if __name__ == "__main__":
    sys.exit(main())
