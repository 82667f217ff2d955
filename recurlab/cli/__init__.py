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

EXIT_BAD_INPUT = 2  # one `error:` line on stderr and this code: bad input, nothing written
COMMAND_MODULES = ("runs", "sweep", "infer", "tui", "compare", "evaluate", "plot", "export", "lens")


def main() -> None:
    from recurlab.cli.tuistart import start_quickly

    if start_quickly(sys.argv[1:]):
        return
    from recurlab.cli.app import app

    for name in COMMAND_MODULES:  # a missing module is a broken install: let its ImportError show
        importlib.import_module(f"recurlab.cli.{name}")
    app()
