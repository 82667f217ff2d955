"""The Textual application: screen modes, the current run, shared colors and commands.

    app = RecurlabApp(runs_dir="runs", run=None, model=None)
    app.run()

Each screen is a mode (keys 1-6) created the first time it is shown; `app.current_run` is the
run that Curves, Inspector, Generate and Sweep look at, chosen on the Runs screen (enter).
`--model` gives a different model directory for Inspector and Generate.
"""

from __future__ import annotations

import gc
from pathlib import Path

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive

from recurlab.rundir import RunDir
from recurlab.tui.model_cache import ModelCache

KEEPS_ERROR_LINE = frozenset({"help", "switch_mode", "command_palette", "leave_input", "quit", "dismiss"})
RUN_COLORS = ("cyan", "orange", "green", "magenta", "yellow", "blue", "red", "white")


def _screen(module: str, cls: str):
    """A mode factory that imports its screen module only when the mode is first shown."""

    def make():
        import importlib

        return getattr(importlib.import_module(f"recurlab.tui.screens.{module}"), cls)()

    return make


class RecurlabApp(App):
    TITLE = "recurlab"
    CSS_PATH = "app.tcss"
    MODES = {
        "runs": _screen("runs", "RunsScreen"),
        "curves": _screen("curves", "CurvesScreen"),
        "inspect": _screen("inspector", "InspectorScreen"),
        "generate": _screen("generate", "GenerateScreen"),
        "sweep": _screen("sweep", "SweepScreen"),
        "eval": _screen("evaluate", "EvalScreen"),
    }
    BINDINGS = [
        Binding("1", "switch_mode('runs')", "Runs", show=False),
        Binding("2", "switch_mode('curves')", "Curves", show=False),
        Binding("3", "switch_mode('inspect')", "Inspect", show=False),
        Binding("4", "switch_mode('generate')", "Generate", show=False),
        Binding("5", "switch_mode('sweep')", "Sweep", show=False),
        Binding("6", "switch_mode('eval')", "Eval", show=False),
        Binding("question_mark", "help", "Keys"),
        Binding("q", "quit", "Quit"),
    ]

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]

    current_run: reactive[RunDir | None] = reactive(None, init=False)

    def __init__(self, runs_dir: str | Path = "runs", run: str | Path | None = None, model: str | Path | None = None):
        # the first screen is the mode Textual composes at start (Curves for a run, else Runs), so no
        # blank default screen is composed and switched away from before the first frame
        self.DEFAULT_MODE = "curves" if run else "runs"
        super().__init__()
        self.runs_dir = Path(runs_dir)
        self.model_path = Path(model) if model else None
        self.overlay: list[str] = []  # runs drawn together on the curves screen, in selection order
        self.pinned: str | None = None  # a run of the overlay drawn on top (Curves) and listed first (Runs)
        self._colors: dict[str, str] = {}
        self.model_cache = ModelCache()  # shared by Inspector and Generate; loads lazily in workers
        if run:
            self.select_run(RunDir(run), notify=False)

    def on_mount(self) -> None:
        self.call_after_refresh(self._after_first_frame)

    def _after_first_frame(self) -> None:
        if not gc.isenabled():  # `recurlab tui` turned collection off for start-up (recurlab.cli.tuistart)
            # start-up objects (Textual's classes, CSS, widgets) live for the whole session: moved out
            # of the collector's sight, later collections have less to walk
            gc.freeze()
            gc.enable()

    def select_run(self, run: RunDir, notify: bool = True) -> None:
        if notify:
            self.current_run = run
        else:  # before the app runs: nothing watches it yet
            self.set_reactive(RecurlabApp.current_run, run)
        if run.name not in self.overlay:
            self.overlay.insert(0, run.name)

    def run_color(self, name: str) -> str:
        """A color per run that stays the same for the whole session."""
        if name not in self._colors:
            self._colors[name] = RUN_COLORS[len(self._colors) % len(RUN_COLORS)]
        return self._colors[name]

    def model_dir(self) -> Path | None:
        """The model the Inspector and Generate screens load: --model, else the current run."""
        if self.model_path is not None:
            return self.model_path
        return self.current_run.path if self.current_run is not None else None

    async def run_action(self, action, default_namespace=None) -> bool:
        # an action started on a screen ends the error line of its last failure there; opening the help,
        # the command palette or another screen does not (the reason is still there on return)
        name = action.split("(", 1)[0] if isinstance(action, str) else ""
        if name not in KEEPS_ERROR_LINE:
            clear = getattr(self.screen, "clear_error", None)
            if clear is not None:
                clear()
        return await super().run_action(action, default_namespace)

    def action_help(self) -> None:
        from recurlab.tui.screens.help import HelpScreen  # the Markdown widget: not before the first frame

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        for key, title in (("runs", "Runs"), ("curves", "Curves"), ("inspect", "Inspector"),
                           ("generate", "Generate"), ("sweep", "Sweep"), ("eval", "Eval")):
            yield SystemCommand(f"Go to {title}", f"Show the {title} screen", lambda k=key: self.switch_mode(k))
        # every key of the active screen is also a command
        for binding in getattr(screen, "BINDINGS", []):
            if isinstance(binding, Binding) and binding.description and binding.show:
                yield SystemCommand(
                    f"{screen.TITLE_SHORT}: {binding.description}",
                    f"key {self.get_key_display(binding)}",
                    lambda b=binding, s=screen: s.run_action(b.action),
                )
