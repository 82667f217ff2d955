"""Shared CLI plumbing: one-line errors with exit code 2, run lookup. No torch here."""

from __future__ import annotations

import sys
from contextlib import contextmanager

import typer

from recurlab.rundir import DEFAULT_RUNS_DIR, RunDir, resolve_run

EXIT_BAD_INPUT = 2

RunsDirOption = typer.Option(DEFAULT_RUNS_DIR, "--runs-dir", help="Directory that holds run directories.")


def fail(message: str, code: int = EXIT_BAD_INPUT):
    """Print one line to stderr and exit; never a traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def user_errors():
    """Turn the project's user-facing exceptions (all ValueError subclasses with one-line
    messages) into `fail`. Other exceptions are bugs and keep their traceback."""
    from recurlab.errors import USER_ERRORS

    try:
        yield
    except USER_ERRORS as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


def get_run(spec: str, runs_dir: str) -> RunDir:
    with user_errors():
        return resolve_run(spec, runs_dir)
