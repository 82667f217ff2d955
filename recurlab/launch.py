"""Start a training worker detached from the caller: what `recurlab train/resume` and the TUI do.

    pid = spawn_worker(run)                    # python -m recurlab.worker RUN_DIR, own session
    pid = spawn_worker(run, resume=True)       # continue from the latest complete checkpoint
    pid = spawn_worker(run, launch=torchrun_line)

The worker runs in its own session (it outlives the terminal and the TUI), reads nothing from
stdin, and appends stdout and stderr to worker.log, so a crash's traceback lands there too.
No torch here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from recurlab.errors import WorkerStartError
from recurlab.rundir import RunDir



def spawn_worker(run: RunDir, resume: bool = False, device: str = "", launch: list[str] | None = None) -> int:
    """Start the worker (or `launch`, its torchrun line) and record its pid; raises RunError."""
    cmd = launch or [sys.executable, "-m", "recurlab.worker", str(run.path.resolve())]
    if resume and not launch:
        cmd.append("--resume")
    if device and not launch:
        cmd += ["--device", device]
    with open(run.log_path, "ab") as log, open(os.devnull, "rb") as devnull:
        try:
            proc = subprocess.Popen(
                cmd, stdin=devnull, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True
            )
        except OSError as exc:
            run.write_status(state="failed", ended=time.time(), error=f"could not start the worker: {exc}")
            raise WorkerStartError(f"could not start the worker for {run.name}: {exc}") from None
    # The worker imports torch before its first status write, so this pid update lands first.
    run.write_status(pid=proc.pid, host=socket.gethostname())
    return proc.pid
