"""The typer application object that every command module registers on."""

import typer

app = typer.Typer(
    name="recurlab",
    help="A terminal lab workbench for depth-recurrent language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
