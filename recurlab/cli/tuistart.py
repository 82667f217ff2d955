"""What `recurlab tui` does with its arguments, without typer: checked here, then the app starts.

    start_quickly(["tui", "runs/cpu-1", "--model", "hf/huginn"])   # True: the TUI ran
    start_quickly(["tui", "--help"])                                # False: typer's turn
    runs_dir, run, model = tui_paths("cpu-1", "runs", None)         # or TuiArgsError / RunError

The typer command (recurlab.cli.tui) calls `tui_paths` too, so both paths check the same way.
`start_quickly` takes only the plain forms (one optional target, --runs-dir and --model with a
value); help, unknown options and anything unusual go to typer, which explains them as usual.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from recurlab.errors import EXIT_BAD_INPUT, ModelFormatError, RunError, TuiArgsError
from recurlab.folders import check_model_path
from recurlab.rundir import DEFAULT_RUNS_DIR, RunDir, resolve_run

OPTIONS = ("--runs-dir", "--model")



def tui_paths(target: str | None, runs_dir: str, model: str | None) -> tuple[str, Path | None, str | None]:
    """(runs directory, run to open or None, model) for `recurlab tui TARGET --runs-dir --model`."""
    run = None
    if not runs_dir:
        raise TuiArgsError("--runs-dir '' is empty: pass the folder that holds the runs")
    if target == "":
        raise TuiArgsError("'' is empty: pass a run directory, a runs directory or the name of a run in --runs-dir")
    if Path(runs_dir).exists() and not Path(runs_dir).is_dir():
        raise TuiArgsError(f"--runs-dir {runs_dir!r} is a file, not a directory: pass the folder that holds the runs")
    if target is not None:
        path = Path(target)
        if path.exists() and not path.is_dir():
            raise TuiArgsError(f"{target!r} is a file: pass a run directory, a runs directory or the name of a run in --runs-dir")
        if not path.exists() and (os.sep in target or target.startswith((".", "~"))):
            # a path, not a run name: say that the path is missing instead of looking it up in runs/
            raise TuiArgsError(f"{target!r} does not exist: pass a run directory, a runs directory or the name of a run in --runs-dir")
        if path.is_dir() and not (path / "run.yaml").exists():
            runs_dir = str(path)  # a runs directory
        else:
            found: RunDir = resolve_run(target, runs_dir)
            run, runs_dir = found.path, str(found.path.parent)
    elif not Path(runs_dir).is_dir():
        raise TuiArgsError(f"runs directory {runs_dir!r} does not exist: start a run with `recurlab train` or pass --runs-dir")
    if model is not None:
        check_model_path(model)  # before the first frame: a folder the engine cannot open is refused here
    return runs_dir, run, model


def parse_plain(argv: list[str]) -> dict | None:
    """The arguments of `tui [TARGET] [--runs-dir DIR] [--model PATH]`, or None for any other form."""
    if not argv or argv[0] != "tui":
        return None
    args = {"target": None, "runs_dir": DEFAULT_RUNS_DIR, "model": None}
    rest = list(argv[1:])
    while rest:
        word = rest.pop(0)
        name, eq, value = word.partition("=")
        if name in OPTIONS:
            if not eq:
                if not rest or rest[0].startswith("-"):
                    return None
                value = rest.pop(0)
            args[name[2:].replace("-", "_")] = value
        elif word.startswith("-") or args["target"] is not None:
            return None  # --help, an unknown option, a second target: typer's usual message
        else:
            args["target"] = word
    return args


def start_quickly(argv: list[str]) -> bool:
    """Run the TUI if `argv` is a plain `tui` command line; False if typer should handle it."""
    args = parse_plain(argv)
    if args is None:
        return False
    try:
        runs_dir, run, model = tui_paths(**args)
    except (TuiArgsError, RunError, ModelFormatError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    import gc

    # no cyclic garbage collection while Textual is imported and the first frame is built (its many
    # small objects would trigger a dozen collections, ~15 ms); the app freezes what start-up made
    # and turns collection back on after that frame (RecurlabApp.on_mount)
    gc.disable()
    from recurlab.tui.app import RecurlabApp  # textual: loaded only when this runs

    RecurlabApp(runs_dir=runs_dir, run=run, model=model).run()
    return True
