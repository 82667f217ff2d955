"""The Curves screen: live training and evaluation curves of one run or several overlaid runs.

Metrics (m / M to cycle): train loss, eval loss per r and eval accuracy per r (one line per r),
learning rate, tokens/s, grad norm, train and eval loss on one chart, and MFU: the model FLOPs of
each step (iterations without gradient cost a forward pass, those with gradient forward and
backward: the formula is on the left) times tokens/s over the device's peak (hardware.peak_tflops,
or known GPUs by name; without one it plots model TFLOP/s). x cycles the x axis: step, tokens seen,
wall-clock minutes since the run's first row. L toggles log-log axes. The pinned run (p on Runs)
is drawn on top. e toggles a time-weighted EMA (its span follows the step
gaps, so uneven logging smooths evenly); [ and ] change its span. l toggles a log y axis. The
list on the left picks the runs to overlay (space); each run keeps its color. New rows are read
from the end of metrics.jsonl once a second (a large run opens from its derived series cache, or
from the file's tail while the rest loads). Long histories are drawn as the minimum and maximum
of each pixel column, so spikes survive. While rows stream in, the plot is redrawn at most twice
a second and otherwise as seldom as keeps drawing near 1% of a core (every 5 s at the least;
the panel on the left shows the newest step within a second); a key redraws at once, and
nothing is read or redrawn while the log is unchanged.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import SelectionList, Static

from recurlab.rundir import RunDir, list_runs
from recurlab.tui.screens.base import LabScreen
from recurlab.tui.widgets.axes import step_ticks

if TYPE_CHECKING:
    from recurlab.runlog.metrics import MetricsSource  # the metric readers: after the first frame

# numpy, plotext and the metric readers load in a worker after the first frame (see `_load_plot`):
# together they take longer to import than Textual itself
PLOT_MODULES = ("recurlab.tui.widgets.stripplot", "recurlab.figures.curves", "recurlab.runlog.metrics")

POLL_S = 1.0  # a stat of each log; a read (in a worker) only when one has grown
MIN_REDRAW_S = 0.5  # at most 2 redraws a second while rows stream in
MAX_REDRAW_S = 5.0  # ... and at least one every 5 s, however slow the plot is to draw
PLOT_CPU_SHARE = 0.007  # between those, space redraws so that building the plot takes 0.7% of a core
LIST_EVERY = 5  # polls between refreshes of the run list
SPANS = (0.005, 0.02, 0.05, 0.1, 0.2)  # EMA span as a fraction of the drawn step range
R_MARKERS = ("hd", "dot", "+", "x", "o", "*", "#", "@")
R_COLORS = ("cyan", "orange", "green", "magenta", "yellow", "blue", "red", "white")
# beyond series.METRICS: views that combine columns (kind "both": train and eval loss; "mfu")
EXTRA_METRICS = (("train and eval loss", "both", "loss"), ("MFU", "mfu", "mfu"))
X_AXES = (("step", "step"), ("tokens", "tokens seen"), ("time", "wall-clock minutes since the first row"))


class CurvesScreen(LabScreen):
    LATE_FOOTER = True
    TITLE_SHORT = "Curves"
    MODE = "curves"
    HELP = __doc__.split("\n", 1)[1]
    BINDINGS = [
        # the footer's keys in order of use; the rest are listed by ?
        Binding("m", "metric(1)", "Metric"),
        Binding("e", "smooth", "Smooth"),
        Binding("l", "logy", "Log y"),
        Binding("a", "all_runs", "Overlay all"),
        Binding("x", "x_axis", "X axis", show=False),
        Binding("L", "loglog", "Log-log", show=False),
        Binding("M", "metric(-1)", "Previous metric", show=False),
        Binding("left_square_bracket", "span(-1)", "Less smooth", key_display="[", show=False),
        Binding("right_square_bracket", "span(1)", "More smooth", key_display="]", show=False),
    ]

    def __init__(self):
        super().__init__()
        self.metric = 0
        self.smooth = False
        self.span = 2
        self.logy = False
        self.loglog = False
        self.x_axis = 0
        self._mfu_cfg: dict[str, tuple] = {}  # run -> (model config, peak FLOP/s or None, world size)
        self.sources: dict[str, MetricsSource] = {}
        self.plot = None  # the StripPlot, once its modules have loaded (after the first frame)
        self._draw_cpu = 0.0  # the UI thread's CPU time when the last redraw began
        self._draw_cost = 0.0  # ... and what that redraw cost it, until plotext had built the figure
        self.drawn: dict[str, tuple[list, list]] = {}  # label -> points last drawn (for tests and the info line)
        self._runs: dict[str, RunDir] = {}
        self._ticks = 0
        self._loading = False
        self._again = False
        self._last_draw = 0.0
        self._drawn_key = None  # what the plot shows: redraw only when this changes
        self._redraw_timer = None
        self.redraws = 0  # plot rebuilds (for tests and the benchmark's idle check)
        self._info_text = ""

    def compose(self) -> ComposeResult:
        yield from self.frame(
            Horizontal(
                Vertical(SelectionList(id="curves-runs"), Static("", id="curves-info"), id="curves-side"),
                Static("loading the plot ...", id="curves-plot-wait"),
                id="curves-body",
            )
        )

    def on_mount(self) -> None:
        self.query_one("#curves-runs").border_title = "runs (space)"
        self.timer = self.set_interval(POLL_S, self.tick)
        self.on_screen_resume()
        self.call_after_refresh(self._load_plot)  # paint the screen first, then import what draws

    @work(thread=True, group="plot-load")
    def _load_plot(self) -> None:
        """Import the plot's modules off the UI thread, then put the plot in the placeholder's place."""
        import importlib

        for name in PLOT_MODULES:
            importlib.import_module(name)
        if self.app.is_running:
            self.app.call_from_thread(self._plot_loaded)

    def _plot_loaded(self) -> None:
        from recurlab.tui.widgets.stripplot import StripPlot  # plotext: after the first frame

        wait = self.query_one("#curves-plot-wait")
        self.plot = StripPlot(id="curves-plot")
        self.query_one("#curves-body").mount(self.plot, after=wait)
        wait.remove()
        self.call_after_refresh(self.redraw)  # once the plot has its size
        self.poll()

    def on_resize(self) -> None:
        self.call_after_refresh(self.redraw)  # the plot's new width needs its own downsampling

    def on_screen_suspend(self) -> None:
        self.timer.pause()

    def on_screen_resume(self) -> None:
        self.sync_run_list()
        self.redraw()
        self.call_after_refresh(self.poll)  # paint the screen first, then start reading
        self.timer.resume()

    # ---- which runs ---------------------------------------------------------------------------
    def sync_run_list(self) -> None:
        sel = self.query_one(SelectionList)
        runs = list_runs(self.app.runs_dir)
        cur = self.app.current_run
        if cur is not None and cur.exists() and cur.name not in {r.name for r in runs}:
            runs.insert(0, cur)  # opened by path, outside the runs directory
        self._runs = {r.name: r for r in runs}
        wanted = [n for n in self.app.overlay if n in self._runs]
        options = [(n, n) for n in self._runs]
        current = [sel.get_option_at_index(i).value for i in range(sel.option_count)]
        if current != list(self._runs) or sorted(sel.selected) != sorted(wanted):
            from rich.text import Text

            with self.prevent(SelectionList.SelectedChanged):
                sel.clear_options()
                sel.add_options([(Text(n, style=self.app.run_color(n)), v, v in wanted) for n, v in options])

    def on_selection_list_selected_changed(self, event: SelectionList.SelectedChanged) -> None:
        selected = set(event.selection_list.selected)
        self.app.overlay[:] = [n for n in self.app.overlay if n in selected] + [
            n for n in event.selection_list.selected if n not in self.app.overlay
        ]
        self.poll()
        self.redraw()

    def action_all_runs(self) -> None:
        self.app.overlay[:] = list(self._runs)
        self.sync_run_list()
        self.poll()
        self.redraw()

    # ---- reading ------------------------------------------------------------------------------
    def _source(self, name: str) -> MetricsSource:
        from recurlab.runlog.metrics import MetricsSource  # the metric readers: after the first frame

        src = self.sources.get(name)
        if src is None:
            run = self._runs.get(name) or RunDir(self.app.runs_dir / name)
            src = self.sources[name] = MetricsSource(run)
        return src

    def tick(self) -> None:
        self._ticks += 1
        if self._ticks % LIST_EVERY == 0:  # runs started or deleted meanwhile
            self.sync_run_list()
        self.poll()

    def poll(self) -> None:
        if self.plot is None:
            return  # _plot_loaded polls once the readers have loaded
        if self._loading:
            self._again = True  # the overlay may have changed: read once more when this read ends
            return
        sources = [self._source(n) for n in self.app.overlay]
        if all(src.unchanged() for src in sources):
            return  # nothing new: no worker, no redraw
        self._loading, self._again = True, False
        self.read_metrics(sources)

    def _read_done(self) -> None:
        self._loading = False
        self._info()  # the newest step and loss within a poll, even while the plot waits for its turn
        if self._again:
            self.poll()

    @work(thread=True, group="metrics")
    def read_metrics(self, sources: list[MetricsSource]) -> None:
        try:
            for src in sources:
                first_load = not src.caught_up
                while src.update():  # a big file arrives in chunks: draw as it loads (throttled)
                    self.app.call_from_thread(self.request_redraw)
                if first_load and src.caught_up:  # all rows are in: show them now, not after the throttle
                    self.app.call_from_thread(self.redraw)
                for event in src.events:
                    self.app.call_from_thread(self._notice, src.run.name, event)
                src.events.clear()
        except Exception as exc:  # an unreadable file must not end the app
            self.app.call_from_thread(self.report, exc, "reading metrics")
        finally:
            if self.app.is_running:
                self.app.call_from_thread(self._read_done)

    def _notice(self, name: str, event: str) -> None:
        if event == "deleted":
            self.app.notify(f"run {name} was deleted; its curves are removed", severity="warning")
            if name in self.app.overlay:
                self.app.overlay.remove(name)
            self.sources.pop(name, None)
            self.sync_run_list()
            self.redraw()
        elif event == "truncated":
            self.app.notify(f"metrics of {name} were truncated or replaced; reloading them", severity="warning")

    # ---- drawing ------------------------------------------------------------------------------
    def _lines(self, width: int):
        """(label, color, marker, xs, ys) for every line of the chosen metric, the pinned run last (on top)."""
        import numpy as np  # loaded with the plot's modules, after the first frame

        from recurlab.figures.curves import shape_line  # numpy, as above

        _title, kind, field = all_metrics()[self.metric]
        names = [n for n in self.app.overlay if n in self.sources]
        pinned = getattr(self.app, "pinned", None)
        names = [n for n in names if n != pinned] + [n for n in names if n == pinned]
        for name in names:
            src = self.sources[name]
            for i, (label, part, xs, ys) in enumerate(self._parts(name, src, kind, field, len(names) == 1)):
                xs = self._on_x(src, xs)
                keep = np.isfinite(xs) & ((xs > 0) if self.loglog else True)
                xs, ys = shape_line(xs[keep], ys[keep], smooth=SPANS[self.span] if self.smooth else 0.0,
                                    logy=self.logy or self.loglog, buckets=4 * width, raw_buckets=width)
                if not len(xs):
                    continue
                if part is not None and len(names) == 1:
                    color, marker = R_COLORS[i % len(R_COLORS)], "hd"
                else:
                    color, marker = self.app.run_color(name), R_MARKERS[i % len(R_MARKERS)] if part is not None else "hd"
                yield label, color, marker, xs, ys

    def _parts(self, name: str, src, kind: str, field: str, alone: bool):
        """(label, part, steps, values) of one run: its train line and/or one line per eval r."""
        def eval_lines(prefix: str):
            for r in src.eval_rs():
                yield (f"{prefix}r={r}" if alone else f"{name} {prefix}r={r}"), r, *src.snapshot("eval", field, r)

        if kind == "train":
            yield name, None, *src.snapshot("train", field)
        elif kind == "eval":
            yield from eval_lines("")
        elif kind == "both":
            yield ("train" if alone else f"{name} train"), None, *src.snapshot("train", "loss")
            yield from eval_lines("eval ")
        else:
            yield name, None, *self._mfu(name, src)

    def _mfu(self, name: str, src):
        """Steps and MFU (or model TFLOP/s without a known peak) of one run's train rows."""
        import numpy as np  # loaded with the plot's modules, after the first frame

        from recurlab.flops import train_flops_per_token_array  # numpy, as above

        cfg, peak, world = self._mfu_setup(name, src)
        if cfg is None:
            return np.empty(0), np.empty(0)
        cols = [src.snapshot("train", f) for f in ("r_no_grad", "r_grad", "seq_len", "tokens_per_s")]
        steps = cols[0][0]
        for xs, _ in cols[1:]:  # rows that have all four (a run from before seq_len was logged has none)
            steps = np.intersect1d(steps, xs)
        ng, g, seq, tps = (ys[np.searchsorted(xs, steps)] for xs, ys in cols)
        flops_per_s = train_flops_per_token_array(cfg, ng, g, seq) * tps / world
        return steps, flops_per_s / (peak if peak else 1e12)

    def _mfu_setup(self, name: str, src) -> tuple:
        if name not in self._mfu_cfg:
            # yaml and numpy: with the plot's modules, after the first frame
            from recurlab.config import run_config
            from recurlab.flops import peak_flops

            try:
                cfg = run_config(src.run)
                status = src.run.read_status()
                peak = peak_flops(str(status.get("device") or ""), cfg.hardware.peak_tflops)
                self._mfu_cfg[name] = (cfg.model, peak, int(status.get("world_size") or 1))
            except Exception as exc:  # an unreadable run.yaml: no MFU line for this run, and a notice
                self.report(exc, f"MFU of {name}")
                self._mfu_cfg[name] = (None, None, 1)
        return self._mfu_cfg[name]

    def _on_x(self, src, steps):
        """Steps as the chosen x axis: tokens seen or minutes since the first row (eval rows
        take their train row's value; between train rows, the interpolation)."""
        import numpy as np  # loaded with the plot's modules, after the first frame

        axis = X_AXES[self.x_axis][0]
        if axis == "step":
            return steps
        sx, v = src.snapshot("train", axis)
        if not len(sx):
            return np.full(len(steps), np.nan)
        out = np.interp(steps, sx, v, left=np.nan, right=np.nan)
        return (out - v[0]) / 60.0 if axis == "time" else out

    def request_redraw(self) -> None:
        """New rows arrived: redraw now, or once the throttle interval since the last redraw is over."""
        if self._redraw_timer is not None:
            return  # one is already scheduled; it will draw everything that arrived meanwhile
        if not self.drawn:
            self.redraw()  # the first rows (a large log's tail) are drawn at once
            return
        interval = MIN_REDRAW_S
        if all(src.caught_up for n in self.app.overlay if (src := self.sources.get(n)) is not None):
            # live rows (not a first load): what the last redraw cost the UI thread, from its start
            # until the figure was built when painted (plotext's part), sets how long to wait
            if self.plot.built_cpu > self._draw_cpu:
                self._draw_cost = self.plot.built_cpu - self._draw_cpu
            interval = min(max(self._draw_cost / PLOT_CPU_SHARE, MIN_REDRAW_S), MAX_REDRAW_S)
        wait = self._last_draw + interval - time.monotonic()
        if wait <= 0.01:
            self.redraw()
        else:
            self._redraw_timer = self.set_timer(wait, self._scheduled_redraw)

    def _scheduled_redraw(self) -> None:
        self._redraw_timer = None
        self.redraw()

    def _view_key(self, plot) -> tuple:
        data = tuple((n, src.series.version, src.preview.version if src.preview is not None else -1)
                     for n in self.app.overlay if (src := self.sources.get(n)) is not None)
        return (self.metric, self.smooth, self.span, self.logy, self.loglog, self.x_axis, getattr(self.app, "pinned", None),
                tuple(plot.size), tuple(self.app.overlay), data)

    def redraw(self) -> None:
        """Rebuild the plot if anything it shows changed (data, metric, options, size, runs)."""
        plot = self.plot
        if plot is None:
            return  # not loaded yet: _plot_loaded draws
        title = all_metrics()[self.metric][0]
        if self._redraw_timer is not None:  # drawing now covers the scheduled redraw
            self._redraw_timer.stop()
            self._redraw_timer = None
        key = self._view_key(plot)
        if key == self._drawn_key:
            return
        self._drawn_key = key
        self._last_draw = time.monotonic()
        self._draw_cpu = time.thread_time()
        self.redraws += 1
        plt = plot.plt
        plt.clear_figure()
        width = max(plot.size.width, 40)
        self.drawn = {}
        for label, color, marker, xs, ys in self._lines(width):
            self.drawn[label] = (xs.tolist(), ys.tolist())
            plt.plot(self.drawn[label][0], self.drawn[label][1], label=label, color=color, marker=marker)
        steps = [x for xs, _ys in self.drawn.values() for x in (xs[:1] + xs[-1:])]
        if steps:  # steps are whole numbers: round ticks instead of plotext's 400.8, 800.5, ...
            plt.xticks(*step_ticks(min(steps), max(steps)))
        extras = []
        if self.smooth:
            extras.append(f"EMA span {SPANS[self.span]:g}")
        if self.loglog:
            extras.append("log-log")
            plt.xscale("log")
            plt.yscale("log")
        elif self.logy:
            extras.append("log y")
            plt.yscale("log")
        if all_metrics()[self.metric][1] == "mfu":
            title = self._mfu_title()
        plt.title(title + (f"  ({', '.join(extras)})" if extras else ""))
        plt.xlabel(X_AXES[self.x_axis][1])
        plot.refresh()
        self._info()

    def _mfu_title(self) -> str:
        peaks = {self._mfu_cfg.get(n, (None, None))[1] for n in self.app.overlay if n in self._mfu_cfg}
        if peaks and None not in peaks:
            return "MFU"
        return "TFLOP/s per device (MFU needs hardware.peak_tflops)"

    def _info(self) -> None:
        from recurlab.flops import MFU_FORMULA  # numpy: with the plot's modules, after the first frame

        title, kind, _ = all_metrics()[self.metric]
        if kind == "mfu":
            title = self._mfu_title()
        scale = "log-log" if self.loglog else f"log y {'on' if self.logy else 'off'}"
        lines = [f"[b]{title}[/b]", f"x {X_AXES[self.x_axis][0]} · smooth {'on' if self.smooth else 'off'} · {scale}"]
        if kind == "mfu":
            lines.append(MFU_FORMULA)
        for name in self.app.overlay:
            src = self.sources.get(name)
            if src is None:
                continue
            with src.lock:
                n = src.series.rows
                step = src.series.train["step"][-1] if len(src.series.train["step"]) else None
                loss = src.series.train["loss"][-1] if len(src.series.train["loss"]) else None
            lines.append(f"[{self.app.run_color(name)}]{name}[/]")
            lines.append(f"  {n:,} rows · step {int(step) if step is not None else '-'}" + (f" · loss {loss:.4f}" if loss is not None else ""))
            if src.loading:
                lines.append("  loading; the latest rows are drawn already")
        if not self.app.overlay:
            lines.append("no run selected: pick one in the list (space) or on the Runs screen")
        text = "\n".join(lines)
        if text != self._info_text:  # an unchanged panel is not re-rendered
            # its height (lines, and how they wrap) only changes with their lengths: a new step
            # and loss of the same widths repaint the panel without laying out the screen again
            relayout = [len(line) for line in lines] != [len(line) for line in self._info_text.split("\n")]
            self._info_text = text
            self.query_one("#curves-info", Static).update(text, layout=relayout)

    def figure_specs(self) -> list:
        """ctrl+s: the drawn metric of the overlaid runs, smoothed and scaled as on screen."""
        from recurlab.figures import curves_figure, run_steps  # numpy and yaml: only when a figure is saved
        from recurlab.figures.curves import METRIC_NAMES  # numpy and yaml, as above

        if self.metric >= len(METRIC_NAMES) or self.x_axis or self.loglog:
            return [self._drawn_figure()]
        names = [n for n in self.app.overlay if n in self.sources]
        width = max(self.plot.size.width if self.plot is not None else 0, 40)
        fig = curves_figure({n: _Locked(self.sources[n]) for n in names}, METRIC_NAMES[self.metric],
                            smooth=SPANS[self.span] if self.smooth else 0.0, logy=self.logy,
                            steps=run_steps([self.sources[n].run for n in names]), buckets=4 * width)
        return [fig]

    def _drawn_figure(self):
        """The lines as drawn (combined views, other x axes, log-log) as a figure spec."""
        from recurlab.figures import FigureError  # numpy and yaml: only when a figure is saved
        from recurlab.figures.spec import Line, LineFigure

        if not self.drawn:
            raise FigureError("nothing drawn yet: pick a run with rows for this view")
        title = all_metrics()[self.metric][0]
        return LineFigure(kind="curves", name=f"curves-{title.replace(' ', '-').lower()}-{X_AXES[self.x_axis][0]}",
                          title=title + (" (log-log)" if self.loglog else ""), subtitle=", ".join(self.app.overlay),
                          xlabel=X_AXES[self.x_axis][1], ylabel=title,
                          lines=[Line(label, xs, ys) for label, (xs, ys) in self.drawn.items()],
                          logy=self.logy or self.loglog)

    # ---- keys ---------------------------------------------------------------------------------
    def action_metric(self, delta: int) -> None:
        self.metric = (self.metric + delta) % len(all_metrics())
        self.redraw()

    def action_x_axis(self) -> None:
        self.x_axis = (self.x_axis + 1) % len(X_AXES)
        self.redraw()

    def action_loglog(self) -> None:
        self.loglog = not self.loglog
        self.redraw()

    def action_smooth(self) -> None:
        self.smooth = not self.smooth
        self.redraw()

    def action_span(self, delta: int) -> None:
        self.span = min(max(self.span + delta, 0), len(SPANS) - 1)
        if not self.smooth:
            self.smooth = True
        self.redraw()

    def action_logy(self) -> None:
        self.logy = not self.logy
        self.redraw()


def all_metrics() -> tuple:
    from recurlab.runlog.series import METRICS  # numpy: after the first frame (PLOT_MODULES)

    return METRICS + EXTRA_METRICS


class _Locked:
    """A MetricsSource read under its lock, in the shape curves_figure reads (series, eval_rs)."""

    def __init__(self, src: MetricsSource):
        self.src = src

    def series(self, kind: str, field: str, r: int | None = None):
        return self.src.snapshot(kind, field, r)

    def eval_rs(self) -> list[int]:
        return self.src.eval_rs()
