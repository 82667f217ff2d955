"""The Runs screen: every run in the runs directory as a table, updated live once a second.

Columns: name, state, step, loss, tokens/s, a sparkline of the recent training loss, and one
column for every config key that differs among the runs listed (found from their run.yaml). A
run that appears, changes state, crashes or is deleted updates the table and, for crashes and
deletions, gives a notice. Keys: enter opens a run's curves, space adds or removes the run from
the curves overlay, p pins it (first here, drawn on top on Curves), v shows its overview (config,
environment, last and best metrics, worker.log), c compares two runs (the two in the overlay, or
the pinned one and the selected one), / filters (e.g. `r_mean=16 state=finished`, `loss<2`,
`name~seed`; an empty filter shows all), o sorts by the next column and O reverses, g groups by
profile or by --seeds family. s stops gracefully (the worker checkpoints and exits), K kills the
worker at once (resume continues from the last checkpoint), u resumes, n starts a new run.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input, Static

from recurlab.errors import UserError
from recurlab.runlog.watch import RunsWatch
from recurlab.runtable import (GROUPS, FilterError, RunRecord, differing_keys, flat_config, group_of, parse_filter,
                               short_names, show, sort_records)
from recurlab.tui.screens.base import LabScreen
from recurlab.tui.screens.runinfo import CompareScreen, OverviewScreen

COLUMNS = ("run", "state", "step", "loss", "tok/s", "recent loss")
# the columns a sort can use (o), with the run-table key each one sorts by
SORT_KEYS = {"run": "name", "state": "state", "step": "step", "loss": "loss", "tok/s": "tokens_per_s"}
STATE_STYLE = {"running": "green", "starting": "yellow", "finished": "blue", "failed": "bold red",
               "lost": "red", "stopped": "magenta", "unreadable": "red"}
POLL_S = 1.0
REST_AFTER_S = 0.2  # after the first frame: every row, the sparklines, the run.yaml columns


class RunsScreen(LabScreen):
    LATE_FOOTER = True
    TITLE_SHORT = "Runs"
    MODE = "runs"
    HELP = __doc__.split("\n", 1)[1]
    BINDINGS = [
        # the footer's keys in order of use; the rest are listed by ?
        Binding("enter", "open", "Open", priority=True),
        Binding("n", "new_run", "New run"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("v", "overview", "Overview", show=False),
        Binding("s", "stop", "Stop"),
        Binding("u", "resume", "Resume"),
        Binding("space", "mark", "Overlay", show=False),
        Binding("p", "pin", "Pin", show=False),
        Binding("c", "compare", "Compare", show=False),
        Binding("o", "sort(1)", "Sort", show=False),
        Binding("O", "reverse", "Reverse sort", show=False),
        Binding("g", "group", "Group", show=False),
        Binding("K", "kill", "Kill now", show=False),
    ]

    def __init__(self):
        super().__init__()
        self.configs: dict[str, dict | None] = {}  # flat run.yaml per run, read after the first frame
        self.keys: list[str] = []  # config keys that differ among the listed runs: their columns
        self.filter = parse_filter("")
        self.sort_col: str | None = None  # None: by creation time, as the runs directory lists them
        self.reverse = False
        self.group = "none"
        self._layout: tuple = ()  # (columns, row order) the table shows
        self._polled = False
        self._keys_for: tuple = ()  # what self.keys were found for
        self._matching = 0  # runs that pass the filter (the first frame's table holds fewer)

    def compose(self) -> ComposeResult:
        yield from self.frame(
            DataTable(id="runs-table", cursor_type="row", zebra_stripes=True),
            Input(placeholder="filter: r_mean=16 state=finished loss<2 name~seed (enter applies, empty shows all)",
                  id="runs-filter", classes="-hidden"),
            Static("", id="runs-detail"),
        )

    def on_mount(self) -> None:
        self.watcher = RunsWatch(self.app.runs_dir)
        # the first frame shows the statuses of the runs that fit on screen; every row, the
        # sparklines and the run.yaml columns follow REST_AFTER_S later (200 runs: most of the
        # work), once the frame is out: reading them at once holds the GIL that the driver's
        # writer thread needs to put the first frame on the terminal
        self.refresh_runs(first=True)
        self.set_timer(REST_AFTER_S, self._after_first_frame)
        self.timer = self.set_interval(POLL_S, self.refresh_runs)

    def on_screen_suspend(self) -> None:
        self.timer.pause()

    def on_screen_resume(self) -> None:
        if self._polled:  # not on the first show: on_mount has just polled (200 runs: a tenth of a second)
            self.refresh_runs()
        self._polled = True
        self.timer.resume()

    def _after_first_frame(self) -> None:
        self.refresh_runs()
        self._cursor_to_current()

    def _cursor_to_current(self) -> None:
        table = self.query_one(DataTable)
        if self.app.current_run is not None and self.app.current_run.name in table.rows:
            table.move_cursor(row=table.get_row_index(self.app.current_run.name))

    # ---- polling --------------------------------------------------------------------------
    def refresh_runs(self, first: bool = False) -> None:
        before = {name: row.state for name, row in self.watcher.rows.items()}
        try:
            change = self.watcher.poll(tails=not first)
        except OSError as exc:
            self.report(exc, f"reading {self.app.runs_dir}")
            return
        for name in change.removed:
            self.configs.pop(name, None)
            if not first:
                self.app.notify(f"run {name} was deleted", severity="warning")
            cur = self.app.current_run
            if cur is not None and cur.name == name and not cur.path.exists():
                self.app.current_run = None
        for name in change.added + change.updated:
            row = self.watcher.rows[name]
            old = before.get(name)
            if old is not None and old != row.state and row.state in ("failed", "lost", "finished", "stopped"):
                sev = "error" if row.state in ("failed", "lost") else "information"
                why = f": {row.error}" if row.error and row.state == "failed" else ""
                self.app.notify(f"run {name} {row.state}{why}", severity=sev)
        unread = [n for n in self.watcher.rows if n not in self.configs]
        if unread and not first:
            self.configs.update(dict.fromkeys(unread))  # None until read: each run.yaml is read once
            self._read_configs([self.watcher.rows[n].run for n in unread])
        self._fill_table(change.added + change.updated, limit=self.app.size.height if first else None)
        if first:
            self._cursor_to_current()
        self._show_detail()

    @work(thread=True, group="configs")
    def _read_configs(self, runs) -> None:
        """The runs' run.yaml, off the UI thread: 200 of them take longer than the first frame may."""
        got = {run.name: flat_config(run) for run in runs}
        if self.app.is_running:
            self.app.call_from_thread(self._configs_read, got)

    def _configs_read(self, got: dict) -> None:
        self.configs.update({n: c for n, c in got.items() if n in self.watcher.rows})
        self._fill_table(list(got))
        self._show_detail()

    # ---- the table ----------------------------------------------------------------------------
    def _record(self, name: str) -> RunRecord:
        row = self.watcher.rows[name]
        return RunRecord(row.run, row.status, row.state, self.configs.get(name))

    def _records(self) -> list[RunRecord]:
        """The runs shown, in the order shown: filtered, sorted, grouped, the pinned run first."""
        shown = [rec for rec in map(self._record, self.watcher.rows) if self.filter.matches(rec)]
        if self.sort_col is not None:
            shown = sort_records(shown, SORT_KEYS.get(self.sort_col, self.sort_col), self.reverse)
        if self.group != "none":
            shown.sort(key=lambda rec: group_of(rec, self.group))  # stable: the sort holds within a group
        pinned = self.app.pinned
        return [r for r in shown if r.name == pinned] + [r for r in shown if r.name != pinned]

    def _fill_table(self, changed: list[str], limit: int | None = None) -> None:
        """The table for the runs shown; `limit` rows at most (the first frame's: no more fit)."""
        table = self.query_one(DataTable)
        shown = self._records()
        self._matching = len(shown)
        shown = shown[:limit]
        # configs never change once read: the keys only change with the runs shown or a config read
        memo = (tuple(r.name for r in shown), tuple(r.config is None for r in shown))
        if memo != self._keys_for:
            self._keys_for, self.keys = memo, differing_keys([r.config for r in shown])
        columns = (("group",) if self.group != "none" else ()) + COLUMNS + tuple(self.keys)
        layout = (columns, tuple(r.name for r in shown))
        if layout == self._layout:
            changed = set(changed)
            for i, rec in enumerate(shown):
                if rec.name in changed:
                    for col, value in zip(columns, self._cells(rec, shown, i)):
                        # widen the column when a value outgrows it (a step count passing 100,000)
                        table.update_cell(rec.name, col, value, update_width=True)
            return
        cursor = self._selected()
        if not self._layout or columns != self._layout[0]:
            table.clear(columns=True)
            titles = short_names(self.keys)
            for col in columns:
                table.add_column(titles.get(col, col), key=col)
        else:
            table.clear()
        for i, rec in enumerate(shown):
            table.add_row(*self._cells(rec, shown, i), key=rec.name)
        self._layout = layout
        if cursor is not None and cursor.name in table.rows:
            table.move_cursor(row=table.get_row_index(cursor.name), animate=False)

    def _cells(self, rec: RunRecord, shown: list[RunRecord], i: int) -> tuple:
        cells = self._styled(self.watcher.rows[rec.name].cells())
        cells += tuple(show(rec.value(k)) for k in self.keys)
        if self.group != "none":
            g = group_of(rec, self.group)
            first = i == 0 or group_of(shown[i - 1], self.group) != g or shown[i - 1].name == self.app.pinned
            cells = (g if first else "", *cells)
        return cells

    def _styled(self, cells):
        from rich.text import Text

        name, state, *rest = cells
        mark = "*" if name == self.app.pinned else "+" if name in self.app.overlay else " "
        return (f"{mark}{name}", Text(state, style=STATE_STYLE.get(state, "")), *rest)

    def _selected(self):
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.watcher.rows.get(key)

    def _view_line(self) -> str:
        parts = [f"{self._matching} of {len(self.watcher.rows)} runs"]
        if self.filter:
            parts.append(f"filter: {self.filter.text}")
        if self.sort_col is not None:
            parts.append(f"sorted by {short_names(self.keys).get(self.sort_col, self.sort_col)} {'↓' if self.reverse else '↑'}")
        if self.group != "none":
            parts.append(f"grouped by {self.group}")
        if self.app.pinned:
            parts.append(f"pinned: {self.app.pinned}")
        return " · ".join(parts)

    def _show_detail(self) -> None:
        detail = self.query_one("#runs-detail", Static)
        row = self._selected()
        if row is None:
            if self.watcher.rows:
                detail.update(f"{self._view_line()}: no run matches; / and an empty filter shows all")
            else:
                detail.update(f"no runs in {self.app.runs_dir}: press n to start one")
            return
        lines = [self._view_line(), f"{row.name}  {row.state}  {row.run.path}"]
        if row.error:
            lines.append(f"error: {row.error}")
        if row.state in ("failed", "lost"):
            lines += [f"| {line}" for line in row.run.log_tail(3)]
        detail.update("\n".join(lines))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    # ---- actions ----------------------------------------------------------------------------
    def action_open(self) -> None:
        box = self.query_one("#runs-filter", Input)
        if self.focused is box:
            # enter is a priority key: it acts before the keys typed just ahead of it have passed
            # through this screen's queue and then the box's, so the filter is read after both
            self.call_later(lambda: box.call_later(lambda: self._apply_filter(box.value)))
            return
        row = self._selected()
        if row is None:
            self.app.notify("no run to open: press n to start one", severity="warning")
            return
        self.app.select_run(row.run)
        self.app.switch_mode("curves")

    def action_mark(self) -> None:
        row = self._selected()
        if row is None:
            return
        if row.name in self.app.overlay:
            self.app.overlay.remove(row.name)
            if self.app.pinned == row.name:
                self.app.pinned = None
                self._fill_table([])
        else:
            self.app.overlay.append(row.name)
        self.query_one(DataTable).update_cell(row.name, "run", self._styled(row.cells())[0])

    def action_pin(self) -> None:
        """Pin the selected run (again: unpin): first in the table, in the overlay, drawn on top."""
        row = self._selected()
        if row is None:
            return
        old = self.app.pinned
        self.app.pinned = None if old == row.name else row.name
        if self.app.pinned and row.name not in self.app.overlay:
            self.app.overlay.append(row.name)
        self._fill_table([n for n in (old, row.name) if n])
        self._show_detail()

    def _two_runs(self):
        """The runs to compare: the two in the overlay, else the pinned one and the selected one."""
        rows = self.watcher.rows
        marked = [n for n in self.app.overlay if n in rows]
        if len(marked) == 2:
            return rows[marked[0]].run, rows[marked[1]].run
        sel = self._selected()
        if self.app.pinned in rows and sel is not None and sel.name != self.app.pinned:
            return rows[self.app.pinned].run, sel.run
        return None

    def action_compare(self) -> None:
        pair = self._two_runs()
        if pair is None:
            self.app.notify("compare: mark exactly two runs with space, or pin one (p) and select another",
                            severity="warning")
            return
        self.app.push_screen(CompareScreen(*pair))

    def action_overview(self) -> None:
        row = self._selected()
        if row is not None:
            self.app.push_screen(OverviewScreen(row.run))

    def action_filter(self) -> None:
        box = self.query_one("#runs-filter", Input)
        box.remove_class("-hidden")
        box.value = self.filter.text
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "runs-filter":
            self._apply_filter(event.value)

    def _apply_filter(self, text: str) -> None:
        extra = tuple({k for c in self.configs.values() if c for k in c})
        try:
            self.filter = parse_filter(text, extra)
        except FilterError as exc:
            self.report(exc, "filter")
            return
        self._close_filter()
        self._fill_table([])
        self._show_detail()

    def _close_filter(self) -> None:
        self.query_one("#runs-filter", Input).add_class("-hidden")
        self.query_one(DataTable).focus()

    def action_leave_input(self) -> None:
        if self.focused is self.query_one("#runs-filter", Input):
            self._close_filter()  # escape keeps the filter that was applied
            return
        super().action_leave_input()

    def action_sort(self, step: int) -> None:
        """The next column to sort by (after the last one: back to the runs directory's order)."""
        cols = [*SORT_KEYS, *self.keys]
        at = cols.index(self.sort_col) + 1 if self.sort_col in cols else 0
        self.sort_col = cols[at] if at < len(cols) else None
        self.reverse = False
        self._fill_table([])
        self._show_detail()

    def action_reverse(self) -> None:
        self.reverse = not self.reverse
        self._fill_table([])
        self._show_detail()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        col = event.column_key.value
        if col not in SORT_KEYS and col not in self.keys:
            return
        self.reverse = not self.reverse if col == self.sort_col else False
        self.sort_col = col
        self._fill_table([])
        self._show_detail()

    def action_group(self) -> None:
        self.group = GROUPS[(GROUPS.index(self.group) + 1) % len(GROUPS)]
        self._fill_table([])
        self._show_detail()

    def action_stop(self) -> None:
        from recurlab.lifecycle import stop_run  # yaml: loaded only when this runs

        row = self._selected()
        if row is None:
            return
        try:
            out = stop_run(row.run, wait=0, by="the TUI")
        except UserError as exc:
            self.report(exc, "stop")
            return
        if out.already_requested:
            self.app.notify(f"{row.name}: stop already requested; K kills the worker")
        else:
            self.app.notify(f"{row.name}: stop requested; the worker checkpoints and exits")

    def action_kill(self) -> None:
        row = self._selected()
        if row is not None:
            self._kill(row.run)

    @work(thread=True, group="control")
    def _kill(self, run) -> None:
        from recurlab.lifecycle import stop_run  # yaml: loaded only when this runs

        try:
            out = stop_run(run, kill=True, by="the TUI (K)")
        except (UserError, OSError) as exc:
            self.app.call_from_thread(self.report, exc, "kill")
            return
        self.app.call_from_thread(self.app.notify, f"{run.name}: killed (pid {out.pid}); last checkpoint: "
                                                   f"{out.checkpoint or 'none'}")
        self.app.call_from_thread(self.refresh_runs)

    def action_resume(self) -> None:
        row = self._selected()
        if row is not None:
            self._resume(row.run)

    @work(thread=True, group="control")
    def _resume(self, run) -> None:
        from recurlab.lifecycle import resume_run  # yaml: loaded only when this runs

        try:
            pid, _ck = resume_run(run, how_to_stop="key s")
        except (UserError, OSError) as exc:
            self.app.call_from_thread(self.report, exc, "resume")
            return
        self.app.call_from_thread(self.app.notify, f"{run.name}: resuming in worker pid {pid}")
        self.app.call_from_thread(self.refresh_runs)

    def action_new_run(self) -> None:
        from recurlab.tui.screens.newrun import NewRunScreen  # yaml: loaded only when this runs

        def started(run) -> None:
            if run is not None:
                self.refresh_runs()
                table = self.query_one(DataTable)
                if run.name in table.rows:
                    table.move_cursor(row=table.get_row_index(run.name))

        self.app.push_screen(NewRunScreen(self.app.runs_dir), started)
