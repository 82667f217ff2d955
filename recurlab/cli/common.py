"""Shared CLI plumbing: one-line errors with exit code 2, run lookup. No torch here."""

from __future__ import annotations

import sys
from contextlib import contextmanager

import typer

from recurlab.errors import EXIT_BAD_INPUT, UserError
from recurlab.rundir import DEFAULT_RUNS_DIR, RunDir, resolve_run

RunsDirOption = typer.Option(DEFAULT_RUNS_DIR, "--runs-dir", help="Directory that holds run directories.")


def fail(message: str, code: int = EXIT_BAD_INPUT):
    """Print one line to stderr and exit; never a traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def user_errors():
    """Turn a UserError (a one-line message) into `fail`. Other exceptions are bugs and keep
    their traceback."""
    try:
        yield
    except UserError as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


def print_table(header: list[str], rows: list[list[str]], right: bool = False) -> None:
    """A table on stdout with rich: boxed and bold on a terminal; plain aligned columns with no
    colour or wrapping when stdout is a pipe or a file, so that logs and scripts can read it."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    tty = sys.stdout.isatty()
    table = Table(box=box.SIMPLE_HEAD if tty else None, pad_edge=False, show_edge=False,
                  padding=(0, 1) if tty else (0, 2, 0, 0),
                  header_style="bold" if tty else "")
    for col in header:
        table.add_column(col, justify="right" if right else "left", no_wrap=not tty, overflow="fold")
    for row in rows:
        table.add_row(*row)
    if tty:
        Console(highlight=False).print(table)
        return
    console = Console(width=100_000, color_system=None, highlight=False)
    with console.capture() as cap:
        console.print(table)
    typer.echo("\n".join(line.rstrip() for line in cap.get().splitlines()))


def get_run(spec: str, runs_dir: str) -> RunDir:
    with user_errors():
        return resolve_run(spec, runs_dir)
