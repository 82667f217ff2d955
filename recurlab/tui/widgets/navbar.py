"""The one-line bar at the top of every screen: the screens with their keys, and the current run.

    yield NavBar("curves")

It renders from the app's state (no text set after mounting), so it is in the screen's first frame.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

TABS = (("1", "runs", "Runs"), ("2", "curves", "Curves"), ("3", "inspect", "Inspect"),
        ("4", "generate", "Generate"), ("5", "sweep", "Sweep"), ("6", "eval", "Eval"))


class NavBar(Widget):
    def __init__(self, mode: str):
        super().__init__(id="navbar")
        self.mode = mode

    def on_mount(self) -> None:
        self.watch(self.app, "current_run", lambda _run: self.refresh(), init=False)

    def render(self) -> Text:
        text = Text()
        for key, mode, title in TABS:
            style = "bold reverse" if mode == self.mode else "dim"
            text.append(f" {key} {title} ", style=style)
            text.append(" ")
        run = self.app.current_run
        text.append(f" run: {run.name}" if run is not None else " no run selected", style="bold" if run else "italic")
        return text
