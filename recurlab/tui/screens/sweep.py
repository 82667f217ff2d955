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

from types import SimpleNamespace

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, Label, Select, Static
from textual_plotext import PlotextPlot

from recurlab.config import default_rs, run_config
from recurlab.errors import UserError
from recurlab.sweep import (LevelGrid, SweepResult, format_heldout, level_grid, load_sweeps, parse_levels, parse_rs,
                            sweep_columns)
from recurlab.tui.screens.resultscreen import ResultScreen, result_bindings
from recurlab.tui.widgets.axes import log2_positions, r_ticks
from recurlab.tui.widgets.heatmap import SweepHeatmap
from recurlab.tui.widgets.stability import StabilityPanel


class SweepScreen(ResultScreen):
    TITLE_SHORT = "Sweep"
    MODE = "sweep"
    HELP = __doc__.split("\n", 1)[1]
    AUTO_FOCUS = "#sweep-table"  # not a text box: digits and ? must reach the app
    BINDINGS = result_bindings("Sweep")
    JOB, A_JOB, WHAT, STATUS = "sweep", "a sweep", "sweep", "#sweep-status"
    NO_SAVED = "no saved sweeps for this run"
    CANCELLING = "cancelling after the current r ..."

    def __init__(self):
        super().__init__()
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

    def read_saved(self) -> list:
        self.heat_step = None
        return load_sweeps(self._run)

    def show_none(self) -> None:
        self.rows = []
        self.draw()
        self._status(f"{self._run.name}: no saved sweeps yet; press s to run one")

    def show_saved(self, index: int) -> None:
        self.shown = index
        res = self.saved[index]
        self.rows = list(res.rows)
        self.heat_step, self.rows_complete = res.step, res.complete
        done = "" if res.complete else " (cancelled part way)"
        counts = format_heldout(res.heldout)
        self._status(f"{self._run.name}: saved sweep {index + 1}/{len(self.saved)} of step {res.step}{done}  {res.path}"
                     + (f"\n{counts}" if counts else ""))
        self.draw()

    # ---- the sweep ---------------------------------------------------------------------------
    def action_start(self) -> None:
        if not self.may_start(self._run is not None and self._run.exists()):
            return
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
        where = "the latest checkpoint" if step is None else f"step {step}"
        at = f" at levels {', '.join(map(str, levels))}" if levels else ""
        cancel = self.begin(f"sweeping r = {', '.join(map(str, rs))}{at} on {where} ...")
        self.sweep(self._run, rs, step, cancel, levels)

    @work(thread=True, exclusive=True, group="sweep")
    def sweep(self, run, rs, step, cancel, levels=None) -> None:
        from recurlab.engine import run_sweep  # torch: loaded in the worker, not with the screen

        def job():
            opened = self.app.model_cache.get(run.path, step=step)  # the model the other screens share
            return run_sweep(opened, rs, difficulties=levels,
                             on_row=lambda row: self.app.call_from_thread(self.add_row, row), cancel=cancel)

        self.run_job(job)  # a missing checkpoint or a deleted run becomes a notice

    def add_row(self, row: dict) -> None:
        self.rows.append(row)
        self.draw()
        self._status(f"sweep: r = {row['r']} done ({len(self.rows)} so far); c cancels")

    def finished_notice(self, result, state: str) -> str:
        where = f"saved to {result.path}" if result.path else "nothing to save"
        return f"sweep {state}: {len(result.rows)} r values of step {result.step}; {where}"

    def after_finish(self, result) -> None:
        # the sweep just run, even if another one was saved meanwhile
        just_run = [i for i, saved in enumerate(self.saved) if saved.path == result.path]
        if just_run:
            self.show_saved(just_run[-1])

    def figure_specs(self) -> list:
        """ctrl+s: accuracy per level vs r and loss vs r (bits per byte for text runs) of the rows
        shown, and the level x r heatmap of the checkpoint's sweeps."""
        from recurlab.figures import FigureError  # numpy: loaded only when ctrl+s saves a figure
        from recurlab.figures.sweeps import level_heatmap_figure, shown_sweep_figure

        if not self.rows or self._run is None:
            raise FigureError("no sweep shown yet: press s to run one")
        first = self.rows[0]
        ys = (["acc"] if any(k.startswith("acc@") for k in first) else []) + ["loss"] + (["bpb"] if "bpb" in first else [])
        shown = SimpleNamespace(rows=list(self.rows), complete=self.rows_complete, path=None)
        specs = [shown_sweep_figure(self._run, self.heat_step, shown, y) for y in ys]
        if self.heat_step is not None and self.trained:  # the same grid as draw_heatmap
            grid = self.heat_grid()
            if grid.levels:
                specs.append(level_heatmap_figure(self._run, grid))
        return specs

    # ---- drawing -----------------------------------------------------------------------------
    def draw(self) -> None:
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

    def heat_grid(self) -> LevelGrid:
        """The level x r grid of the shown checkpoint: its saved sweeps and the rows of one still running."""
        live = [SweepResult(run="", step=self.heat_step, rows=self.rows)] if self.cancel_event is not None else []
        return level_grid(self.saved + live, self.heat_step)

    def draw_heatmap(self) -> None:
        heat = self.query_one(SweepHeatmap)
        if self.heat_step is None or not self.trained:
            heat.show(None, self.trained, self.r_mean)
            return
        heat.show(self.heat_grid(), self.trained, self.r_mean)

    @staticmethod
    def _cell(col: str, v) -> str:
        if v is None:
            return "-"
        if col == "r":
            return str(v)
        if col.startswith("acc"):
            return f"{100 * v:.1f}%"
        return f"{v:.4f}"
