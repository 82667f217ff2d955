"""`recurlab tui`: open the terminal UI on a runs directory or on one run.

    recurlab tui                          # runs in ./runs
    recurlab tui runs/cpu-1122-101500     # one run (its curves first)
    recurlab tui other_runs/              # a different runs directory
    recurlab tui RUN --model path/to/huginn-folder   # inspect/generate with another model

No torch here: the first screen appears before any model is loaded. The checks live in
recurlab.cli.tuistart, which also starts plain `recurlab tui` command lines without typer.
"""

from __future__ import annotations

from typing import Optional

import typer

from recurlab.cli.app import app, examples
from recurlab.cli.common import RunsDirOption, fail
from recurlab.cli.tuistart import tui_paths
from recurlab.errors import UserError


@app.command(epilog=examples('recurlab tui', 'recurlab tui demo', 'recurlab tui --runs-dir /data/runs --model models/huginn-0125'))
def tui(
    target: Optional[str] = typer.Argument(None, help="A run (name, prefix or path) or a runs directory."),
    runs_dir: str = RunsDirOption,
    model: Optional[str] = typer.Option(None, "--model", help="Model for Inspector and Generate: a run directory or a model folder."),
) -> None:
    """Open the TUI: runs, live curves, latent inspector, generation with an r slider, r sweeps."""
    try:
        runs_dir, run, model = tui_paths(target, runs_dir, model)
    except UserError as exc:
        fail(str(exc).splitlines()[0])
    from recurlab.tui.app import RecurlabApp  # textual: loaded only when this runs

    RecurlabApp(runs_dir=runs_dir, run=run, model=model).run()
