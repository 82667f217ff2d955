"""The help screen (key ?): the active screen's description and every key it answers to.

    app.push_screen(HelpScreen(app.screen))
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, screen):
        super().__init__()
        self.target = screen

    def _keys(self) -> list[tuple[str, str]]:
        rows = []
        for binding in list(getattr(self.target, "BINDINGS", [])) + list(self.app.BINDINGS):
            if isinstance(binding, tuple):
                binding = Binding(*binding)
            if binding.description:
                rows.append((self.app.get_key_display(binding), binding.description))
        return rows

    def compose(self) -> ComposeResult:
        title = getattr(self.target, "TITLE_SHORT", "") or "recurlab"
        lines = [f"# {title}", "", getattr(self.target, "HELP", "").strip(), "", "| key | action |", "|---|---|"]
        for key, desc in self._keys():
            lines.append(f"| `{key}` | {desc} |")
        lines += ["", "Keys 1-6 switch screens, escape leaves a text box, ctrl+p opens the command palette; escape closes this help."]
        with VerticalScroll(id="help-body"):
            yield Markdown("\n".join(lines))
