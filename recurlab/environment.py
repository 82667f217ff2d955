"""What a run trained on: torch and Python versions, device, threads, host, and the git commit of
recurlab when it runs from a git checkout. The worker writes it to RUN/environment.json at each
start (a resume on another machine says so); the Runs screen's overview reads it.

    env = collect(device_name="cpu", world_size=1)       # in the worker, after torch has loaded
    write(run, env); read(run)                           # read(): {} for runs from before the file

Imports torch only inside collect() (readers of the file need no torch).
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import time
from pathlib import Path

from recurlab.rundir import RunDir, atomic_write_json, read_json

FILE = "environment.json"
FIELDS = ("torch", "cuda", "python", "device", "threads", "world_size", "host", "platform", "recurlab_commit",
          "recurlab_dirty", "recorded")


def git_commit(package_dir: Path | None = None) -> tuple[str | None, bool | None]:
    """(commit, has uncommitted changes) of the checkout recurlab runs from; (None, None) for an
    installed package or where git is missing."""
    pkg = (package_dir or Path(__file__).resolve().parent)
    try:
        top = subprocess.run(["git", "-C", str(pkg), "rev-parse", "--show-toplevel", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        if top.returncode != 0:
            return None, None
        root, commit = top.stdout.split()[:2]
        if Path(root).resolve() != pkg.parent:  # some other repository that merely contains the package
            return None, None
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5)
        return commit, (bool(dirty.stdout.strip()) if dirty.returncode == 0 else None)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None, None


def collect(device_name: str, world_size: int = 1) -> dict:
    import torch  # the worker has it loaded already

    commit, dirty = git_commit()
    return {
        "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
        "device": device_name, "threads": torch.get_num_threads(), "world_size": world_size,
        "host": socket.gethostname(), "platform": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "recurlab_commit": commit, "recurlab_dirty": dirty, "recorded": time.time(),
    }


def write(run: RunDir, env: dict) -> None:
    atomic_write_json(run.path / FILE, env)


def read(run: RunDir) -> dict:
    data = read_json(run.path / FILE)
    return data if isinstance(data, dict) else {}


def describe(run: RunDir, status: dict | None = None) -> list[tuple[str, str]]:
    """(field, value) lines for the overview; what the run did not record says so."""
    env = read(run)
    status = status if status is not None else run.read_status()
    fallback = {"device": status.get("device"), "host": status.get("host"), "world_size": status.get("world_size")}
    out = []
    for key in FIELDS:
        value = env.get(key, fallback.get(key))
        if key == "recorded" and isinstance(value, (int, float)):
            value = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
        if key == "recurlab_commit" and value is None and env:
            value = "unknown (not run from a git checkout)"
        if value is None:
            value = "none" if key in env else "not recorded"
        out.append((key, str(value)))
    if not env:
        out.append(("note", f"no {FILE}: the run was trained before recurlab recorded it"))
    return out

