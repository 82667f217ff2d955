"""The dialog that starts a training run from a profile (Runs screen, key n).

    app.push_screen(NewRunScreen("runs"), callback)   # callback(RunDir | None)
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select

from recurlab.config import profile_names
from recurlab.errors import UserError
from recurlab.lifecycle import plan_run, start_run


class NewRunScreen(ModalScreen):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, runs_dir):
        super().__init__()
        self.runs_dir = runs_dir

    def compose(self) -> ComposeResult:
        names = profile_names()
        with Vertical(id="newrun-box"):
            yield Label(f"New training run in {self.runs_dir}")
            yield Select([(n, n) for n in names], value="cpu" if "cpu" in names else names[0], allow_blank=False, id="newrun-profile")
            yield Input(placeholder="overrides, e.g. train.max_steps=200 r_mean=8", id="newrun-overrides")
            yield Input(placeholder="run name (optional)", id="newrun-name")
            with Horizontal(id="newrun-buttons"):
                yield Button("Start", variant="primary", id="newrun-start")
                yield Button("Cancel", id="newrun-cancel")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.start()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "newrun-start":
            self.start()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def start(self) -> None:
        profile = self.query_one("#newrun-profile", Select).value
        overrides = self.query_one("#newrun-overrides", Input).value.split()
        name = self.query_one("#newrun-name", Input).value.strip() or None
        try:
            run, _pid = start_run(plan_run(self.runs_dir, str(profile), overrides, name=name))
        except (UserError, OSError) as exc:
            self.app.notify(f"new run: {str(exc).splitlines()[0]}", severity="error", timeout=8)
            return
        self.app.notify(f"started {run.name} ({profile})")
        self.dismiss(run)
