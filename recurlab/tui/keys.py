"""Every key of the workbench, read from the screens' and widgets' own bindings, for the help
screen (`?`) and the generated key map (docs/keys.md), so that neither can drift from the code.

    from recurlab.tui.keys import screen_keys
    for key in screen_keys(GenerateScreen): print(key.key, key.description, key.footer)

    python -m recurlab.docgen        # writes docs/keys.md with this module's markdown()

A screen's footer shows its bindings with `show=True`, in the order of its BINDINGS (the most used
first); the rest are listed only by `?`.
"""

from __future__ import annotations

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
        symbol = format_key(name)  # question_mark -> ?; named keys (enter, escape, left) keep their names
        out.append("+".join([*mods, symbol if len(symbol) == 1 and symbol.isascii() else name]))
    return " ".join(out)


def bindings(cls) -> list[Binding]:
    """The bindings recurlab's own classes declare, merged as Textual merges them (base classes
    first, a subclass's key replacing the base's in its place); Textual's own (tab, ctrl+c) are left out."""
    merged: dict[str, Binding] = {}
    for base in reversed(cls.__mro__):
        if base.__module__.startswith("recurlab.") and "BINDINGS" in base.__dict__:
            for b in base.__dict__["BINDINGS"]:
                b = b if isinstance(b, Binding) else Binding(*b)
                merged[b.key] = b
    return list(merged.values())


def _inert(cls, b: Binding) -> bool:
    """ctrl+s on a screen without a plot: the base screen declares it, and it does nothing there."""
    if b.action != "save_figure":
        return False
    owner = next(c for c in cls.__mro__ if "figure_specs" in c.__dict__)
    return any(x.action == "save_figure" for x in owner.__dict__.get("BINDINGS", []))


def class_keys(cls) -> list[Key]:
    """The keys of one screen or widget class: footer keys first, in their order, then the rest."""
    rows = [Key(key_text(b), b.description, b.show) for b in bindings(cls) if b.description and not _inert(cls, b)]
    return [k for k in rows if k.footer] + [k for k in rows if not k.footer]


def screen_keys(cls) -> list[Key]:
    return class_keys(cls)


def _load(package: str, module: str, cls: str):
    import importlib

    return getattr(importlib.import_module(f"recurlab.tui.{package}.{module}"), cls)


def markdown(app_cls) -> str:
    """docs/keys.md: every screen's keys, then the widgets' and those of `app_cls` (the app's, given by
    the caller: the app imports the help screen, which imports this module)."""
    lines = ["# Keys of the TUI", "",
             "Generated from the screens' bindings by `python -m recurlab.docgen`; "
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
    lines += [_row(k) for k in class_keys(app_cls)]
    lines += ["| `ctrl+p` | command palette: every screen and every key of the screen as a command | yes |",
              "| `escape` | leave a text box, so that the screen's keys work again | no |", ""]
    return "\n".join(lines)


def _row(k: Key) -> str:
    key = k.key.replace("|", "\\|")
    return f"| `{key}` | {k.description} | {'yes' if k.footer else 'no'} |"

