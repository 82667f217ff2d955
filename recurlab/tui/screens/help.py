"""The help screen (key ?): the active screen's description and every key it answers to, the ones
its footer shows first, then the rest (read from the bindings by recurlab.tui.keys).

    app.push_screen(HelpScreen(app.screen))
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

from recurlab.tui.keys import class_keys, screen_keys


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, screen):
        super().__init__()
        self.target = screen

    def _rows(self) -> list[tuple[str, str, str]]:
        """(key, action, where) for the screen, the recurlab widgets on it, and the app."""
        rows = [(k.key, k.description, "footer" if k.footer else "") for k in screen_keys(type(self.target))]
        seen = set()
        for widget in self.target.query("*"):
            cls = type(widget)
            if cls in seen or not cls.__module__.startswith("recurlab.") or "BINDINGS" not in cls.__dict__:
                continue
            seen.add(cls)
            where = f"when the {cls.__name__} has focus"
            rows += [(k.key, k.description, where) for k in class_keys(cls)]
        rows += [(k.key, k.description, "footer, every screen" if k.footer else "every screen") for k in class_keys(type(self.app))]
        return rows

    def compose(self) -> ComposeResult:
        title = getattr(self.target, "TITLE_SHORT", "") or "recurlab"
        # the keys first: they are what ? is pressed for; the screen's description follows
        lines = [f"# {title}: every key", "", "| key | action | shown |", "|---|---|---|"]
        for key, desc, where in self._rows():
            lines.append(f"| `{key}` | {desc} | {where} |")
        lines += ["", "Keys 1-6 switch screens, escape leaves a text box, ctrl+p opens the command palette; "
                  "escape closes this help.", "", f"## {title}", "", getattr(self.target, "HELP", "").strip()]
        with VerticalScroll(id="help-body"):
            yield Markdown("\n".join(lines))
