"""What every screen shares: the navigation bar, the footer, a help text, an error line, and
ctrl+s, which saves the screen's plot as a figure (PNG, SVG, PDF and CSV, through the same
code as `recurlab plot`) and the screen itself as SVG, into the run's figures/ folder.

    class CurvesScreen(LabScreen):
        TITLE_SHORT = "Curves"
        HELP = "What this screen shows ..."
        def compose(self): yield from self.frame(Plot())
        def figure_specs(self): return [curves_figure(...)]   # ctrl+s saves these
"""

from __future__ import annotations

from pathlib import Path

from textual import events, on, work
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from recurlab.errors import UserError
from recurlab.tui.widgets.navbar import NavBar


class LabScreen(Screen):
    TITLE_SHORT = ""
    MODE = ""
    HELP = ""
    BINDINGS = [
        Binding("escape", "leave_input", "Leave input", show=False),
        # listed by ? (the footer has room only for each screen's own most used keys)
        Binding("ctrl+s", "save_figure", "Save figure and screen", show=False),
    ]

    # the first screens of `recurlab tui` (Runs, Curves) mount their key bar right after the first
    # paint: setting up its bindings costs ~0.07 s, a fifth of what that first frame waits for
    LATE_FOOTER = False

    def frame(self, *widgets):
        yield NavBar(self.MODE)
        yield from widgets
        # a failed action's one-line reason, above the footer until the screen's next action
        yield Static("", id="error-line", markup=False)
        if not self.LATE_FOOTER:
            yield Footer()

    @on(events.Mount)
    def _mount_late_footer(self) -> None:
        if self.LATE_FOOTER:
            self.call_after_refresh(self._add_footer)

    async def _add_footer(self) -> None:
        await self.mount(Footer())
        self.refresh_bindings()  # a footer mounted late shows the keys once told that they are current

    def report(self, exc: BaseException, what: str) -> None:
        """A notice instead of a crash: one line for user errors, the type and message otherwise.
        The line also stays in the screen's error line until the next action (a notice fades)."""
        if isinstance(exc, UserError):
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        else:
            msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        self.fail(f"{what}: {msg}")

    def fail(self, line: str) -> None:
        """A failed action: its one-line reason in the error line and as a notice."""
        self.show_error(line)
        self.app.notify(line, severity="error", timeout=8)

    def show_error(self, line: str) -> None:
        """Write `line` into the error line; it stays until clear_error (the next action)."""
        widget = self.query_one("#error-line", Static)
        widget.update(f"error: {line}" if not line.startswith("error:") else line)
        widget.display = True

    def clear_error(self) -> None:
        """Called by the app before each action that a key starts on this screen."""
        widget = self.query("#error-line")
        if widget and widget.first().display:
            widget.first().update("")
            widget.first().display = False

    def action_leave_input(self) -> None:
        """escape out of a text box, so that the screen's keys (and 1-5, ?) work again."""
        if isinstance(self.focused, Input):
            self.set_focus(None)

    # ---- ctrl+s: figures ------------------------------------------------------------------------
    def figure_specs(self) -> list:
        """The figure specs (recurlab.figures) of what the screen plots now. Screens with a plot
        override this; raising FigureError says why there is nothing to save yet."""
        return []

    def figure_dir(self) -> Path | None:
        """Where ctrl+s saves: the figures/ folder of the run the screen shows (./figures for a
        --model folder, which is not a run directory, as `recurlab inspect` does with traces)."""
        run = self.app.current_run
        if run is not None and run.exists():
            return run.path / "figures"
        return Path("figures").resolve() if getattr(self.app, "model_path", None) else None

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        # ctrl+s only where there is a plot: hidden from the footer and inert elsewhere
        if action == "save_figure":
            return type(self).figure_specs is not LabScreen.figure_specs
        return True

    def action_save_figure(self) -> None:
        from recurlab.figures import FigureError  # numpy and yaml: loaded only when this runs

        out = self.figure_dir()
        if out is None:
            self.app.notify("no run to save figures into: pick one on the Runs screen", severity="warning")
            return
        try:
            specs = self.figure_specs()
        except FigureError as exc:
            self.report(exc, "save figure")
            specs = []
        # the screenshot is taken now, on the UI thread; the files are written in a worker
        screen_svg = self.app.export_screenshot(title=f"recurlab {self.TITLE_SHORT}")
        if specs:  # drawing takes a moment: say that it started
            self.app.notify(f"saving {len(specs)} figure{'s' if len(specs) > 1 else ''} to {out} ...", timeout=3)
        self._write_figures(specs, screen_svg, out)

    @work(thread=True, group="save-figure")
    def _write_figures(self, specs: list, screen_svg: str, out: Path) -> None:
        from recurlab.figures import save_figure, write_new  # numpy and yaml: loaded only when this runs

        saved, errors = [], []
        try:
            shot = write_new(out, f"screen-{self.MODE or 'tui'}", {"svg": screen_svg.encode()})[0]
        except Exception as exc:
            self.app.call_from_thread(self.report, exc, "save screen")
            return
        for spec in specs:
            try:
                saved.append(save_figure(spec, out, csv=True)[0])
            except Exception as exc:  # matplotlib missing: the screen SVG is still saved
                errors.append(exc)
        for exc in errors[:1]:
            self.app.call_from_thread(self.report, exc, "save figure")
        figs = ", ".join(p.with_suffix("").name + ".{png,svg,pdf,csv}" for p in saved)
        self.app.call_from_thread(
            self.app.notify,
            f"saved to {out}: " + (f"{figs} and " if figs else "") + f"the screen as {shot.name}", timeout=10)
