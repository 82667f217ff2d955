"""What every screen shares: the navigation bar, the footer, a help text and error notices.

    class CurvesScreen(LabScreen):
        TITLE_SHORT = "Curves"
        HELP = "What this screen shows ..."
        def compose(self): yield from self.frame(Plot())
"""

from __future__ import annotations

from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input

from recurlab.errors import USER_ERRORS
from recurlab.tui.widgets.navbar import NavBar


class LabScreen(Screen):
    TITLE_SHORT = ""
    MODE = ""
    HELP = ""
    BINDINGS = [Binding("escape", "leave_input", "Leave input", show=False)]

    def frame(self, *widgets):
        yield NavBar(self.MODE)
        yield from widgets
        yield Footer()

    def report(self, exc: BaseException, what: str) -> None:
        """A notice instead of a crash: one line for user errors, the type and message otherwise."""
        if isinstance(exc, USER_ERRORS):
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        else:
            msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        self.app.notify(f"{what}: {msg}", severity="error", timeout=8)

    def action_leave_input(self) -> None:
        """escape out of a text box, so that the screen's keys (and 1-5, ?) work again."""
        if isinstance(self.focused, Input):
            self.set_focus(None)
