"""Shared fixtures: run the real `recurlab` CLI as a subprocess, and end every worker it starts.

    def test_x(cli, runs_dir):
        res = cli("train", "--profile", "tiny", "--runs-dir", runs_dir, check=True)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from recurlab.rundir import list_runs, pid_alive


def cli_command() -> list[str]:
    """The installed console script next to this interpreter, or the same entry point via -c."""
    script = Path(sys.executable).parent / "recurlab"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from recurlab.cli import main; main()"]


def kill_workers(runs_dir: Path) -> None:
    """SIGKILL the process group of every live worker recorded in `runs_dir`."""
    for run in list_runs(runs_dir):
        pid = run.read_status().get("pid")
        if not (pid and pid_alive(pid) and _is_recurlab(pid)):
            continue
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)  # a detached worker leads its own group
            else:
                os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _is_recurlab(pid: int) -> bool:
    """Guard against a recycled pid: only our own workers (or CLI processes) are killed."""
    try:
        return b"recurlab" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    """A runs directory in tmp_path; every worker recorded in it is killed by pid at teardown."""
    root = tmp_path / "runs"
    root.mkdir()
    yield root
    kill_workers(root)


def run_cli(*args, cwd: Path, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess:
    """Run `recurlab ARGS...` in `cwd`; returns the CompletedProcess (text, captured)."""
    res = subprocess.run(
        cli_command() + [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if check and res.returncode != 0:
        raise AssertionError(f"recurlab {' '.join(map(str, args))} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    return res


@pytest.fixture
def cli(tmp_path):
    """`run_cli` in tmp_path, so that nothing lands in the repository's runs/."""

    def run(*args, **kw) -> subprocess.CompletedProcess:
        return run_cli(*args, cwd=tmp_path, **kw)

    return run
