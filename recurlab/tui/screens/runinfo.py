"""A run's overview and the comparison of two runs, opened from the Runs screen (v and c).

    app.push_screen(OverviewScreen(run))     # resolved config, environment, last/best metrics, worker.log tail
    app.push_screen(CompareScreen(a, b))     # config keys that differ, side by side, and both summaries

Both read the run directory in a worker (the summary reads all of metrics.jsonl once) and close
with escape or q.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from recurlab import environment
from recurlab.rundir import RunDir
from recurlab.runtable import Stat, config_diff, flat_config, run_summary, show

LOG_LINES = 20


def _num(value: float) -> str:
    return f"{value:.5g}" if isinstance(value, float) else str(value)


def summary_lines(stats: list[Stat]) -> list[str]:
    if not stats:
        return ["no metric rows yet"]
    width = max(len(s.metric) for s in stats)
    out = [f"{'metric':<{width}}  {'last':>10}  {'at step':>8}  {'best':>10}  {'at step':>8}"]
    for s in stats:
        out.append(f"{s.metric:<{width}}  {_num(s.last):>10}  {s.last_step:>8}  {_num(s.best):>10}  {s.best_step:>8}")
    return out


class OverviewScreen(Screen):
    BINDINGS = [Binding("escape", "close", "Close"), Binding("q", "close", "Close", show=False)]

    def __init__(self, run: RunDir):
        super().__init__()
        self.run = run
        self.text = ""  # what the body shows (for tests)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="info-body"):
            yield Static(f"[b]{self.run.name}[/b]  reading {self.run.path} ...", id="info-text")
        yield Footer()

    def on_mount(self) -> None:
        self.load()

    @work(thread=True)
    def load(self) -> None:
        run = self.run
        status = run.read_status()
        state = run.effective_state(status) if status else "unreadable"
        lines = [f"{run.name}  {state}  step {status.get('step')}/{status.get('max_steps')}  {run.path}", "",
                 "ENVIRONMENT"]
        lines += [f"  {key:<16} {value}" for key, value in environment.describe(run, status)]
        lines += ["", "SUMMARY (last and best of every metric)"]
        lines += ["  " + line for line in summary_lines(run_summary(run))]
        lines += ["", f"WORKER.LOG (last {LOG_LINES} lines)"]
        lines += ["  " + line for line in run.log_tail(LOG_LINES)] or ["  (empty)"]
        lines += ["", f"CONFIG ({run.config_path.name}, resolved)"]
        try:
            lines += ["  " + line for line in run.config_path.read_text().splitlines()]
        except OSError as exc:
            lines.append(f"  unreadable: {exc}")
        text = "\n".join(lines)
        if self.app.is_running:
            self.app.call_from_thread(self._show, text)

    def _show(self, text: str) -> None:
        from rich.text import Text

        self.text = text
        self.query_one("#info-text", Static).update(Text(text))

    def action_close(self) -> None:
        self.dismiss()


class CompareScreen(Screen):
    BINDINGS = [Binding("escape", "close", "Close"), Binding("q", "close", "Close", show=False),
                Binding("a", "all_keys", "All keys")]

    def __init__(self, a: RunDir, b: RunDir):
        super().__init__()
        self.a, self.b = a, b
        self.all_keys = False
        self.diff: list[tuple[str, object, object]] = []  # (key, a, b) shown (for tests)
        self.summary = ""

    def compose(self) -> ComposeResult:
        yield Static(f"[b]{self.a.name}[/b]  vs  [b]{self.b.name}[/b]: config keys that differ (a: all keys)",
                     id="compare-title")
        yield DataTable(id="compare-table", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="compare-summary"):
            yield Static("reading the metrics ...", id="compare-text")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for col, key in (("key", "key"), (self.a.name, "a"), (self.b.name, "b")):
            table.add_column(col, key=key)
        self.ca, self.cb = flat_config(self.a), flat_config(self.b)
        self._fill()
        self.load()

    def _fill(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        if self.all_keys:
            keys = list(dict.fromkeys([*(self.ca or {}), *(self.cb or {})]))
            self.diff = [(k, (self.ca or {}).get(k), (self.cb or {}).get(k)) for k in keys]
        else:
            self.diff = config_diff(self.ca, self.cb)
        from rich.text import Text

        for key, va, vb in self.diff:
            style = "bold yellow" if va != vb else ""
            table.add_row(key, Text(show(va), style=style), Text(show(vb), style=style))
        if not self.diff:
            table.add_row("(the configs are the same)", "", "")

    @work(thread=True)
    def load(self) -> None:
        sa, sb = ({s.metric: s for s in run_summary(r)} for r in (self.a, self.b))
        names = list(dict.fromkeys([*sa, *sb]))
        width = max([len(n) for n in names] + [6])
        w = max(len(self.a.name), len(self.b.name), 18)
        lines = [f"{'metric':<{width}}  {self.a.name[:w]:>{w}}  {self.b.name[:w]:>{w}}   (last / best)"]
        for n in names:
            cells = [f"{_num(s.last)} / {_num(s.best)}" if (s := side.get(n)) else "-" for side in (sa, sb)]
            lines.append(f"{n:<{width}}  {cells[0]:>{w}}  {cells[1]:>{w}}")
        if not names:
            lines.append("no metric rows in either run yet")
        text = "\n".join(lines)
        if self.app.is_running:
            self.app.call_from_thread(self._show, text)

    def _show(self, text: str) -> None:
        from rich.text import Text

        self.summary = text
        self.query_one("#compare-text", Static).update(Text(text))

    def action_all_keys(self) -> None:
        self.all_keys = not self.all_keys
        self._fill()

    def action_close(self) -> None:
        self.dismiss()
