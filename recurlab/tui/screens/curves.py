"""The Curves screen: live training and evaluation curves of one run or several overlaid runs.

Metrics (m / M to cycle): train loss, eval loss per r and eval accuracy per r (one line per r),
learning rate, tokens/s, grad norm. e toggles a time-weighted EMA (its span follows the step
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
    from recurlab.tui.metricsource import MetricsSource  # the metric readers: after the first frame

# numpy, plotext and the metric readers load in a worker after the first frame (see `_load_plot`):
# together they take longer to import than Textual itself
PLOT_MODULES = ("recurlab.tui.widgets.stripplot", "recurlab.figures.curves", "recurlab.tui.metricsource")

POLL_S = 1.0  # a stat of each log; a read (in a worker) only when one has grown
MIN_REDRAW_S = 0.5  # at most 2 redraws a second while rows stream in
MAX_REDRAW_S = 5.0  # ... and at least one every 5 s, however slow the plot is to draw
PLOT_CPU_SHARE = 0.007  # between those, space redraws so that building the plot takes 0.7% of a core
LIST_EVERY = 5  # polls between refreshes of the run list
SPANS = (0.005, 0.02, 0.05, 0.1, 0.2)  # EMA span as a fraction of the drawn step range
R_MARKERS = ("hd", "dot", "+", "x", "o", "*", "#", "@")
R_COLORS = ("cyan", "orange", "green", "magenta", "yellow", "blue", "red", "white")


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
        from recurlab.tui.metricsource import MetricsSource  # the metric readers: after the first frame

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
        """(label, color, marker, xs, ys) for every line of the chosen metric."""
        from recurlab.figures.curves import shape_line  # numpy and yaml: after the first frame (so is METRICS)
        from recurlab.tui.series import METRICS

        _title, kind, field = METRICS[self.metric]
        names = [n for n in self.app.overlay if n in self.sources]
        for name in names:
            src = self.sources[name]
            keys = [None] if kind == "train" else src.eval_rs()
            for i, r in enumerate(keys):
                xs, ys = shape_line(*src.snapshot(kind, field, r), smooth=SPANS[self.span] if self.smooth else 0.0,
                                    logy=self.logy, buckets=4 * width, raw_buckets=width)
                if not len(xs):
                    continue
                label = name if r is None else (f"r={r}" if len(names) == 1 else f"{name} r={r}")
                if r is not None and len(names) == 1:
                    color, marker = R_COLORS[i % len(R_COLORS)], "hd"
                else:
                    color, marker = self.app.run_color(name), R_MARKERS[i % len(R_MARKERS)] if r is not None else "hd"
                yield label, color, marker, xs, ys

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
        return (self.metric, self.smooth, self.span, self.logy, tuple(plot.size), tuple(self.app.overlay), data)

    def redraw(self) -> None:
        """Rebuild the plot if anything it shows changed (data, metric, options, size, runs)."""
        plot = self.plot
        if plot is None:
            return  # not loaded yet: _plot_loaded draws
        from recurlab.tui.series import METRICS  # the metric readers: after the first frame

        title = METRICS[self.metric][0]
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
        if self.logy:
            extras.append("log y")
            plt.yscale("log")
        plt.title(title + (f"  ({', '.join(extras)})" if extras else ""))
        plt.xlabel("step")
        plot.refresh()
        self._info()

    def _info(self) -> None:
        from recurlab.tui.series import METRICS  # the metric readers: after the first frame

        title = METRICS[self.metric][0]
        lines = [f"[b]{title}[/b]", f"smooth {'on' if self.smooth else 'off'} · log y {'on' if self.logy else 'off'}"]
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
        from recurlab.figures.curves import METRIC_NAMES

        names = [n for n in self.app.overlay if n in self.sources]
        width = max(self.plot.size.width if self.plot is not None else 0, 40)
        fig = curves_figure({n: _Locked(self.sources[n]) for n in names}, METRIC_NAMES[self.metric],
                            smooth=SPANS[self.span] if self.smooth else 0.0, logy=self.logy,
                            steps=run_steps([self.sources[n].run for n in names]), buckets=4 * width)
        return [fig]

    # ---- keys ---------------------------------------------------------------------------------
    def action_metric(self, delta: int) -> None:
        from recurlab.tui.series import METRICS  # the metric readers: after the first frame

        self.metric = (self.metric + delta) % len(METRICS)
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


class _Locked:
    """A MetricsSource read under its lock, in the shape curves_figure reads (series, eval_rs)."""

    def __init__(self, src: MetricsSource):
        self.src = src

    def series(self, kind: str, field: str, r: int | None = None):
        return self.src.snapshot(kind, field, r)

    def eval_rs(self) -> list[int]:
        return self.src.eval_rs()
