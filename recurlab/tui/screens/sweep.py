"""The Sweep screen: held-out loss and task accuracy of a checkpoint at several r.

s starts a sweep over the r values in the box (default: powers of two up to 4 x r_mean) on the
chosen checkpoint, in a background worker; each r appears in the table and the plot as soon as
it finishes; c cancels after the current r (the rows done so far are kept). The levels box
sweeps task levels other than the run's, e.g. 5,6,7,8 beyond the trained ones (empty: the
run's own). Results are saved as sweeps/step_NNNNNNNN.csv and .json in the run directory (a
later sweep of the same checkpoint gets step_NNNNNNNN_2.*, and so on: none replaces another)
and shown again next time, the newest first; [ and ] page through the saved sweeps. Below, the
heatmap merges every saved sweep of the shown checkpoint: accuracy per level (rows) and r
(columns), trained levels and harder ones together; beside it, once `recurlab inspect RUN
--stability` has written one, the run's stability summary per level (settling fraction and the
core step's spectral radius), so that extrapolation and stability read together.
"""

from __future__ import annotations

import threading

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, Label, Select, Static
from textual_plotext import PlotextPlot

from recurlab.errors import UserError
from recurlab.tui.screens.base import LabScreen
from recurlab.tui.widgets.axes import log2_positions, r_ticks
from recurlab.sweep import level_grid
from recurlab.tui.widgets.heatmap import SweepHeatmap
from recurlab.tui.widgets.stability import StabilityPanel


class SweepScreen(LabScreen):
    TITLE_SHORT = "Sweep"
    MODE = "sweep"
    HELP = __doc__.split("\n", 1)[1]
    AUTO_FOCUS = "#sweep-table"  # not a text box: digits and ? must reach the app
    BINDINGS = [
        Binding("s", "start", "Sweep"),
        Binding("c", "cancel", "Cancel"),
        Binding("left_square_bracket", "saved(-1)", "Older", key_display="["),  # all four fit at 80 columns
        Binding("right_square_bracket", "saved(1)", "Newer", key_display="]"),
    ]

    def __init__(self):
        super().__init__()
        self.rows: list[dict] = []
        self.saved = []  # SweepResult list from load_sweeps
        self.shown = -1
        self.cancel_event: threading.Event | None = None
        self._run = None
        self.trained: set[int] = set()  # the run's training levels, for the heatmap
        self.r_mean = 0
        self.heat_step: int | None = None  # the checkpoint the heatmap (and the shown rows) belong to
        self.rows_complete = True

    def compose(self) -> ComposeResult:
        yield from self.frame(
            Horizontal(
                Label("checkpoint"), Select([], id="sweep-ckpt", allow_blank=True, prompt="latest"),
                Label("r"), Input(id="sweep-rs", placeholder="1,2,4,8,16"),
                Label("levels"), Input(id="sweep-levels", placeholder="the run's"),
                id="sweep-controls",
            ),
            Static("", id="sweep-status"),
            Horizontal(DataTable(id="sweep-table", cursor_type="row"), PlotextPlot(id="sweep-plot"), id="sweep-body"),
            Horizontal(SweepHeatmap(id="sweep-heat"), StabilityPanel(id="sweep-stability"), id="sweep-bottom"),
        )

    def on_mount(self) -> None:
        self.on_screen_resume()

    def on_screen_resume(self) -> None:
        run = self.app.current_run
        self.query_one(StabilityPanel).load(run)  # a summary written since the last visit shows too
        if run is self._run and run is not None:
            return
        self._run = run
        if run is None or not run.exists():
            self._status("no run selected: pick one on the Runs screen (1, enter)")
            return
        from recurlab.config import default_rs, run_config

        try:
            cfg = run_config(run)
        except UserError as exc:
            self.report(exc, "sweep")
            return
        self.query_one("#sweep-rs", Input).value = ",".join(map(str, default_rs(cfg.train.r_mean)))
        self.r_mean = cfg.train.r_mean
        self.trained = set(cfg.data.train_difficulties or cfg.data.difficulties) if cfg.data.source == "task" else set()
        cks = run.checkpoints()
        self.query_one("#sweep-ckpt", Select).set_options([(f"step {c.step}", c.step) for c in reversed(cks)])
        self.load_saved(show_last=True)

    def load_saved(self, show_last: bool = False) -> None:
        from recurlab.sweep import load_sweeps

        self.saved = load_sweeps(self._run)
        self.heat_step = None
        if show_last and self.saved:
            self.show_result(len(self.saved) - 1)
        elif not self.saved:
            self.rows = []
            self.draw()
            self._status(f"{self._run.name}: no saved sweeps yet; press s to run one")

    def show_result(self, index: int) -> None:
        self.shown = index
        res = self.saved[index]
        self.rows = list(res.rows)
        self.heat_step, self.rows_complete = res.step, res.complete
        done = "" if res.complete else " (cancelled part way)"
        from recurlab.sweep import format_heldout

        counts = format_heldout(res.heldout)
        self._status(f"{self._run.name}: saved sweep {index + 1}/{len(self.saved)} of step {res.step}{done}  {res.path}"
                     + (f"\n{counts}" if counts else ""))
        self.draw()

    def _status(self, text: str) -> None:
        self.query_one("#sweep-status", Static).update(text)

    # ---- the sweep ---------------------------------------------------------------------------
    def action_start(self) -> None:
        from recurlab.sweep import parse_rs

        if self._run is None or not self._run.exists():
            self.app.notify("no run selected: pick one on the Runs screen", severity="warning")
            return
        if self.cancel_event is not None:
            self.app.notify("a sweep is already running; c cancels it", severity="warning")
            return
        from recurlab.sweep import parse_levels

        try:
            rs = parse_rs(self.query_one("#sweep-rs", Input).value)
            levels_spec = self.query_one("#sweep-levels", Input).value.strip()
            levels = parse_levels(levels_spec) if levels_spec else None
        except UserError as exc:
            self.report(exc, "sweep")
            return
        step = self.query_one("#sweep-ckpt", Select).value
        step = step if isinstance(step, int) else None  # no choice: the latest checkpoint
        latest = self._run.latest_checkpoint()
        self.heat_step = step if step is not None else (latest.step if latest else None)
        self.rows_complete = True
        self.rows = []
        self.draw()
        self.cancel_event = threading.Event()
        where = "the latest checkpoint" if step is None else f"step {step}"
        at = f" at levels {', '.join(map(str, levels))}" if levels else ""
        self._status(f"sweeping r = {', '.join(map(str, rs))}{at} on {where} ...")
        self.sweep(self._run, rs, step, self.cancel_event, levels)

    @work(thread=True, exclusive=True, group="sweep")
    def sweep(self, run, rs, step, cancel, levels=None) -> None:
        from recurlab.engine import run_sweep

        try:
            opened = self.app.model_cache.get(run.path, step=step)  # the model the other screens share
            result = run_sweep(opened, rs, difficulties=levels,
                               on_row=lambda row: self.app.call_from_thread(self.add_row, row), cancel=cancel)
        except Exception as exc:  # a missing checkpoint or a deleted run becomes a notice
            self.app.call_from_thread(self.report, exc, "sweep")
            self.app.call_from_thread(self._finish, None)
            return
        self.app.call_from_thread(self._finish, result)

    def add_row(self, row: dict) -> None:
        self.rows.append(row)
        self.draw()
        self._status(f"sweep: r = {row['r']} done ({len(self.rows)} so far); c cancels")

    def _finish(self, result) -> None:
        self.cancel_event = None
        if result is None:
            return
        where = f"saved to {result.path}" if result.path else "nothing to save"
        state = "finished" if result.complete else "cancelled"
        self.app.notify(f"sweep {state}: {len(result.rows)} r values of step {result.step}; {where}")
        self.load_saved(show_last=True)
        # the sweep just run, even if another one was saved meanwhile
        just_run = [i for i, saved in enumerate(self.saved) if saved.path == result.path]
        if just_run:
            self.show_result(just_run[-1])

    def action_cancel(self) -> None:
        if self.cancel_event is None:
            self.app.notify("no sweep is running")
            return
        self.cancel_event.set()
        self._status("cancelling after the current r ...")

    def action_saved(self, delta: int) -> None:
        if not self.saved:
            self.app.notify("no saved sweeps for this run")
            return
        self.show_result(min(max(self.shown + delta, 0), len(self.saved) - 1))

    def figure_specs(self) -> list:
        """ctrl+s: accuracy per level vs r and loss vs r (bits per byte for text runs) of the rows
        shown, and the level x r heatmap of the checkpoint's sweeps."""
        from types import SimpleNamespace

        from recurlab.figures import FigureError
        from recurlab.figures.sweeps import level_heatmap_figure, shown_sweep_figure
        from recurlab.sweep import SweepResult

        if not self.rows or self._run is None:
            raise FigureError("no sweep shown yet: press s to run one")
        first = self.rows[0]
        ys = (["acc"] if any(k.startswith("acc@") for k in first) else []) + ["loss"] + (["bpb"] if "bpb" in first else [])
        shown = SimpleNamespace(rows=list(self.rows), complete=self.rows_complete, path=None)
        specs = [shown_sweep_figure(self._run, self.heat_step, shown, y) for y in ys]
        if self.heat_step is not None and self.trained:  # the same grid as draw_heatmap
            live = [SweepResult(run="", step=self.heat_step, rows=self.rows)] if self.cancel_event is not None else []
            grid = level_grid(self.saved + live, self.heat_step)
            if grid.levels:
                specs.append(level_heatmap_figure(self._run, self.heat_step, grid.levels, grid.rs, grid.acc))
        return specs

    # ---- drawing -----------------------------------------------------------------------------
    def draw(self) -> None:
        from recurlab.sweep import sweep_columns

        table = self.query_one(DataTable)
        table.clear(columns=True)
        cols = sweep_columns(self.rows) if self.rows else ["r", "loss", "acc"]
        cols = [c for c in cols if c != "tokens_per_s"] + (["acc"] if self.rows and "acc" in self.rows[0] else [])
        for c in cols:
            table.add_column(c, key=c)
        for row in self.rows:
            table.add_row(*[self._cell(c, row.get(c)) for c in cols])
        plt = self.query_one(PlotextPlot).plt
        plt.clear_figure()
        if self.rows:
            rs = [row["r"] for row in self.rows]
            xs = log2_positions(rs)  # r on a log2 axis, ticks labelled with r
            plt.plot(xs, [row["loss"] for row in self.rows], label="held-out loss", color="cyan", marker="hd")
            if "acc" in self.rows[0]:
                plt.plot(xs, [row["acc"] for row in self.rows], label="accuracy", color="orange", marker="hd", yside="right")
            plt.xticks(*r_ticks(rs))
        plt.title("held-out loss and accuracy vs r")
        plt.xlabel("r (iterations, log2 axis)")
        self.query_one(PlotextPlot).refresh()
        self.draw_heatmap()

    def draw_heatmap(self) -> None:
        from recurlab.sweep import SweepResult

        heat = self.query_one(SweepHeatmap)
        if self.heat_step is None or not self.trained:
            heat.show(None, self.trained, self.r_mean)
            return
        # the rows of a sweep still running join the saved ones of the same checkpoint
        live = [SweepResult(run="", step=self.heat_step, rows=self.rows)] if self.cancel_event is not None else []
        heat.show(level_grid(self.saved + live, self.heat_step), self.trained, self.r_mean)

    @staticmethod
    def _cell(col: str, v) -> str:
        if v is None:
            return "-"
        if col == "r":
            return str(v)
        if col.startswith("acc"):
            return f"{100 * v:.1f}%"
        return f"{v:.4f}"
