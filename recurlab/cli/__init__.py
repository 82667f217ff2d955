"""recurlab's command line. Each module registers its commands on `app`.

    recurlab train --profile cpu          recurlab runs
    recurlab sweep RUN --r 1,2,4,8        recurlab tui

Command modules import torch only inside the commands that need the model, so that
`recurlab runs`, `status` and the TUI's first screen start fast.
"""

import importlib

from recurlab.cli.app import app

COMMAND_MODULES = ("runs", "sweep", "infer", "tui", "compare", "evaluate", "plot", "export")


def main() -> None:
    for name in COMMAND_MODULES:  # a missing module is a broken install: let its ImportError show
        importlib.import_module(f"recurlab.cli.{name}")
    app()
