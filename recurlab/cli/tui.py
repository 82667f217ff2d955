"""`recurlab tui`: open the terminal UI on a runs directory or on one run.

    recurlab tui                          # runs in ./runs
    recurlab tui runs/cpu-1122-101500     # one run (its curves first)
    recurlab tui other_runs/              # a different runs directory
    recurlab tui RUN --model path/to/huginn-folder   # inspect/generate with another model

No torch here: the first screen appears before any model is loaded.
"""

from __future__ import annotations

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
    if target is not None:
        path = Path(target)
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
