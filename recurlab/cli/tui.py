"""`recurlab tui`: open the terminal UI on a runs directory or on one run.

    recurlab tui                          # runs in ./runs
    recurlab tui runs/cpu-1122-101500     # one run (its curves first)
    recurlab tui other_runs/              # a different runs directory
    recurlab tui RUN --model path/to/huginn-folder   # inspect/generate with another model

No torch here: the first screen appears before any model is loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from recurlab.cli.app import app
from recurlab.cli.common import RunsDirOption, fail, get_run


@app.command()
def tui(
    target: Optional[str] = typer.Argument(None, help="A run (name, prefix or path) or a runs directory."),
    runs_dir: str = RunsDirOption,
    model: Optional[str] = typer.Option(None, "--model", help="Model for Inspector and Generate: a run directory or a model folder."),
) -> None:
    """Open the TUI: runs, live curves, latent inspector, generation with an r slider, r sweeps."""
    run = None
    if Path(runs_dir).exists() and not Path(runs_dir).is_dir():
        fail(f"--runs-dir {runs_dir!r} is a file, not a directory: pass the folder that holds the runs")
    if target is not None:
        path = Path(target)
        if path.exists() and not path.is_dir():
            fail(f"{target!r} is a file: pass a run directory, a runs directory or the name of a run in --runs-dir")
        if not path.exists() and (os.sep in target or target.startswith((".", "~"))):
            # a path, not a run name: say that the path is missing instead of looking it up in runs/
            fail(f"{target!r} does not exist: pass a run directory, a runs directory or the name of a run in --runs-dir")
        if path.is_dir() and not (path / "run.yaml").exists():
            runs_dir = str(path)  # a runs directory
        else:
            run = get_run(target, runs_dir)
            runs_dir = str(run.path.parent)
    elif not Path(runs_dir).is_dir():
        fail(f"runs directory {runs_dir!r} does not exist: start a run with `recurlab train` or pass --runs-dir")
    if model is not None and not Path(model).exists():
        fail(f"--model {model!r} does not exist: pass a run directory or a model folder")
    from recurlab.tui.app import RecurlabApp

    RecurlabApp(runs_dir=runs_dir, run=run.path if run else None, model=model).run()
