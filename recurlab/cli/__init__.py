"""recurlab's command line. Each module registers its commands on `app`.

    recurlab train --profile cpu          recurlab runs
    recurlab sweep RUN --r 1,2,4,8        recurlab tui

Command modules import torch only inside the commands that need the model, so that
`recurlab runs`, `status` and the TUI's first screen start fast. `recurlab tui` with plain
arguments starts without typer (whose option parsing imports pydantic: 0.15 s before the
first frame); anything else, --help included, goes through typer as usual.
"""

import importlib
import sys

from recurlab.cli.tuistart import start_quickly
from recurlab.errors import EXIT_BAD_INPUT
COMMAND_MODULES = ("runs", "sweep", "infer", "tui", "compare", "evaluate", "plot", "export", "lens")


def main() -> None:
    if start_quickly(sys.argv[1:]):
        return
    from recurlab.cli.app import app  # typer: loaded only when this runs

    for name in COMMAND_MODULES:  # a missing module is a broken install: let its ImportError show
        importlib.import_module(f"recurlab.cli.{name}")
    sys.exit(run_app(app, sys.argv[1:]))


def run_app(app, argv: list[str]) -> int:
    """Run typer with its parse errors (a word for an integer, an unknown option, a missing
    argument) as the one `error:` line and exit code 2 that every other bad input gets, instead of
    its usage box. `recurlab` alone still prints the help."""
    import typer

    # typer raises click's UsageError, or that of the click it bundles (typer >= 0.20): take it
    # from typer's own BadParameter, whichever it is
    usage_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
    no_args_is_help = getattr(sys.modules[usage_error.__module__], "NoArgsIsHelpError", ())
    try:
        code = app(args=argv, prog_name="recurlab", standalone_mode=False)
    except no_args_is_help as exc:
        exc.show()
        return EXIT_BAD_INPUT
    except usage_error as exc:
        message = " ".join(exc.format_message().split()).rstrip(".")
        where = f"`{exc.ctx.command_path} --help`" if exc.ctx is not None else "`recurlab --help`"
        sys.stderr.write(f"error: {message}; see {where}\n")
        return EXIT_BAD_INPUT
    except typer.Abort:
        sys.stderr.write("interrupted\n")
        return 130
    return code if isinstance(code, int) else 0
