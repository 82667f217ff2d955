"""Every key of the workbench, read from the screens' and widgets' own bindings, for the help
screen (`?`) and the generated key map (docs/keys.md), so that neither can drift from the code.

    from recurlab.tui.keys import screen_keys
    for key in screen_keys(GenerateScreen): print(key.key, key.description, key.footer)

    python -m recurlab.tui.keys > docs/keys.md      # what tests/test_docs.py compares with

A screen's footer shows its bindings with `show=True`, in the order of its BINDINGS (the most used
first); the rest are listed only by `?`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from textual.binding import Binding
from textual.keys import format_key

SCREENS = (  # (module, class, key that shows it): the order of the navigation bar
    ("runs", "RunsScreen", "1"), ("curves", "CurvesScreen", "2"), ("inspector", "InspectorScreen", "3"),
    ("generate", "GenerateScreen", "4"), ("sweep", "SweepScreen", "5"), ("evaluate", "EvalScreen", "6"),
)
# widgets with keys of their own, and the screens that hold them (their keys work while they have focus)
WIDGETS = (("slider", "Slider", "the r slider (Inspector, Generate)"),
           ("tokengrid", "TokenGrid", "the token x iteration grid (Inspector)"),
           ("wavefront", "WavefrontView", "the wavefront of the parallel sampler (Generate)"))


@dataclass(frozen=True)
class Key:
    key: str          # as a user types it: "ctrl+s", "[", "enter"
    description: str
    footer: bool      # shown in the footer (else only in the help)


def key_text(binding: Binding) -> str:
    """The key as the docs and the help write it: its display if the binding names one, else every
    key it answers to, in Textual's names made readable (question_mark -> ?, ctrl kept as ctrl+)."""
    if binding.key_display:
        return binding.key_display
    out = []
    for key in binding.key.split(","):
        *mods, name = key.strip().split("+")
        out.append("+".join([*mods, format_key(name)]))
    return " ".join(out)


def bindings(cls) -> list[Binding]:
    """A class's bindings as Textual merges them (base classes first, a subclass's key replaces
    the base's), in declaration order."""
    merged = cls._merge_bindings()
    return [b for group in merged.key_to_bindings.values() for b in group]


def class_keys(cls) -> list[Key]:
    """The keys of one screen or widget class: footer keys first, in their order, then the rest."""
    rows = [Key(key_text(b), b.description, b.show) for b in bindings(cls) if b.description]
    return [k for k in rows if k.footer] + [k for k in rows if not k.footer]


def screen_keys(cls) -> list[Key]:
    return class_keys(cls)


def app_keys() -> list[Key]:
    from recurlab.tui.app import RecurlabApp

    return class_keys(RecurlabApp)


def _load(package: str, module: str, cls: str):
    import importlib

    return getattr(importlib.import_module(f"recurlab.tui.{package}.{module}"), cls)


def markdown() -> str:
    """docs/keys.md: every screen's keys, then the widgets' and the app's."""
    lines = ["# Keys of the TUI", "",
             "Generated from the screens' bindings by `python -m recurlab.tui.keys > docs/keys.md`; "
             "`tests/test_docs.py` fails when this page differs from what the command writes.", "",
             "**footer** marks the keys that each screen's footer shows, in that order (the most used first); "
             "`?` lists every key of the screen you are on.", ""]
    for module, cls_name, switch in SCREENS:
        cls = _load("screens", module, cls_name)
        lines += [f"## {cls.TITLE_SHORT} (key `{switch}`)", "", "| key | action | footer |", "|---|---|---|"]
        lines += [_row(k) for k in screen_keys(cls)]
        lines.append("")
    for module, cls_name, where in WIDGETS:
        cls = _load("widgets", module, cls_name)
        lines += [f"## Widget: {where}", "", "| key | action | footer |", "|---|---|---|"]
        lines += [_row(k) for k in class_keys(cls)]
        lines.append("")
    lines += ["## Everywhere", "", "| key | action | footer |", "|---|---|---|"]
    lines += [_row(k) for k in app_keys()]
    lines += ["| `ctrl+p` | command palette: every screen and every key of the screen as a command | yes |",
              "| `escape` | leave a text box, so that the screen's keys work again | no |", ""]
    return "\n".join(lines)


def _row(k: Key) -> str:
    key = k.key.replace("|", "\\|")
    return f"| `{key}` | {k.description} | {'yes' if k.footer else 'no'} |"


if __name__ == "__main__":
    sys.stdout.write(markdown())
