"""The command-line reference (docs/cli.md), written from the Typer app itself, so that it cannot
drift from the commands: every command, its arguments, options, defaults and examples.

    python -m recurlab.docgen        # writes docs/cli.md with this module's markdown()

It uses Typer's own Markdown writer (what `typer recurlab.cli.app utils docs` runs), without the
network or a terminal: the text does not depend on the terminal's width.
"""

from __future__ import annotations

import importlib

import typer

from recurlab.cli import COMMAND_MODULES
from recurlab.cli.app import app


def command_app():
    """The Typer app with every command module registered, as `recurlab` builds it."""
    for name in COMMAND_MODULES:
        importlib.import_module(f"recurlab.cli.{name}")
    return app


def _root():
    """The app's click command and a context for it (typer's own click: its context class). The
    commands are put in the order `recurlab` registers them (module by module, as written), which
    an earlier import of one command module in the same process would otherwise change."""
    root = typer.main.get_command(command_app())

    def place(item):
        callback = item[1].callback
        module = callback.__module__.rsplit(".", 1)[-1]
        return (COMMAND_MODULES.index(module) if module in COMMAND_MODULES else len(COMMAND_MODULES),
                callback.__code__.co_firstlineno)

    root.commands = dict(sorted(root.commands.items(), key=place))
    return root, root.context_class(root, info_name="recurlab")


def commands() -> dict[str, object]:
    """Every command a user can type, subcommands as 'group sub' (`profiles`, `profiles show`), with
    its click command."""
    root, ctx = _root()
    found = {}

    def walk(group, prefix: str) -> None:
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            found[prefix + name] = cmd
            if hasattr(cmd, "list_commands"):  # a group: its subcommands too
                walk(cmd, prefix + name + " ")

    walk(root, "")
    return found


def _examples_as_code(text: str) -> str:
    """The examples that end each command's help, as one console block (Typer writes them as
    paragraphs, one command each)."""
    out, block = [], []
    for para in text.split("\n\n"):
        if para.startswith("recurlab ") and "\n" not in para:
            block.append(para)
            continue
        if block:
            out.append("```console\n" + "\n".join(f"$ {c}" for c in block) + "\n```")
            block = []
        out.append(para)
    if block:
        out.append("```console\n" + "\n".join(f"$ {c}" for c in block) + "\n```")
    return "\n\n".join(out)


def markdown() -> str:
    from typer.cli import get_docs_for_click

    root, ctx = _root()
    body = _examples_as_code(get_docs_for_click(obj=root, ctx=ctx, name="recurlab", title="Command-line reference"))
    intro = ("Generated from the Typer app by `python -m recurlab.docgen`; `tests/test_docs.py` fails "
             "when this page differs from what the command writes. `recurlab COMMAND --help` prints the same.\n\n")
    title, rest = body.split("\n\n", 1)
    return f"{title}\n\n{intro}{rest.rstrip()}\n"

