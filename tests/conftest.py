"""Shared fixtures: run the real `recurlab` CLI as a subprocess, and end every worker it starts.

    def test_x(cli, runs_dir):
        res = cli("train", "--profile", "tiny", "--runs-dir", runs_dir)
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


def _kill_workers(runs_dir: Path) -> None:
    for run in list_runs(runs_dir):
        pid = run.read_status().get("pid")
        if pid and pid_alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)  # the worker leads its own session and group
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    """A runs directory in tmp_path; every worker recorded in it is killed by pid at teardown."""
    root = tmp_path / "runs"
    root.mkdir()
    yield root
    _kill_workers(root)


@pytest.fixture
def cli(tmp_path):
    """Run `recurlab ARGS...` in tmp_path; returns the CompletedProcess (text, captured)."""

    def run(*args, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess:
        res = subprocess.run(
            cli_command() + [str(a) for a in args], cwd=tmp_path, capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        if check and res.returncode != 0:
            raise AssertionError(f"recurlab {' '.join(map(str, args))} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
        return res

    return run
