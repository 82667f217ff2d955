"""The typer application object that every command module registers on, and the examples that
end each command's --help.

    @app.command(epilog=examples("recurlab runs", "recurlab runs --runs-dir elsewhere"))
"""

import typer

app = typer.Typer(
    name="recurlab",
    help="A terminal lab workbench for depth-recurrent language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def examples(*commands: str) -> str:
    """A --help epilog with one example command per line. Typer joins the lines of a paragraph, so
    each command is a paragraph of its own; no square brackets (rich would read them as markup)."""
    assert commands and not any("[" in c for c in commands)
    return "\n\n".join(["Examples:", *commands])
