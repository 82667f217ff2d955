"""The Runs screen: every run in the runs directory, updated live once a second.

Columns: name, state, step, loss, tokens/s and a sparkline of the recent training loss. A run
that appears, changes state, crashes or is deleted updates the table and, for crashes and
deletions, gives a notice. Keys: enter opens a run's curves, s stops gracefully (the worker
checkpoints and exits), K kills the worker at once (resume continues from the last checkpoint),
u resumes, n starts a new run from a profile, space adds or removes the run from the curves overlay.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from recurlab.errors import UserError
from recurlab.tui.runwatch import RunsWatch
from recurlab.tui.screens.base import LabScreen

COLUMNS = ("run", "state", "step", "loss", "tok/s", "recent loss")
STATE_STYLE = {"running": "green", "starting": "yellow", "finished": "blue", "failed": "bold red",
               "lost": "red", "stopped": "magenta", "unreadable": "red"}
POLL_S = 1.0


class RunsScreen(LabScreen):
    LATE_FOOTER = True
    TITLE_SHORT = "Runs"
    MODE = "runs"
    HELP = __doc__.split("\n", 1)[1]
    BINDINGS = [
        # the footer's keys in order of use; the rest are listed by ?
        Binding("enter", "open", "Open", priority=True),
        Binding("n", "new_run", "New run"),
        Binding("s", "stop", "Stop"),
        Binding("u", "resume", "Resume"),
        Binding("space", "mark", "Overlay", show=False),
        Binding("K", "kill", "Kill now", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield from self.frame(
            DataTable(id="runs-table", cursor_type="row", zebra_stripes=True),
            Static("", id="runs-detail"),
        )

    def on_mount(self) -> None:
        self.watcher = RunsWatch(self.app.runs_dir)
        table = self.query_one(DataTable)
        for col in COLUMNS:
            table.add_column(col, key=col)
        self.refresh_runs(first=True)
        self.timer = self.set_interval(POLL_S, self.refresh_runs)

    def on_screen_suspend(self) -> None:
        self.timer.pause()

    def on_screen_resume(self) -> None:
        self.refresh_runs()
        self.timer.resume()

    # ---- polling --------------------------------------------------------------------------
    def refresh_runs(self, first: bool = False) -> None:
        before = {name: row.state for name, row in self.watcher.rows.items()}
        try:
            change = self.watcher.poll()
        except OSError as exc:
            self.report(exc, f"reading {self.app.runs_dir}")
            return
        table = self.query_one(DataTable)
        for name in change.removed:
            if name in table.rows:
                table.remove_row(name)
            if not first:
                self.app.notify(f"run {name} was deleted", severity="warning")
            cur = self.app.current_run
            if cur is not None and cur.name == name and not cur.path.exists():
                self.app.current_run = None
        for name in change.added + change.updated:
            row = self.watcher.rows[name]
            cells = self._styled(row.cells())
            if name in table.rows:
                for col, value in zip(COLUMNS, cells):
                    # widen the column when a value outgrows it (a step count passing 100,000)
                    table.update_cell(name, col, value, update_width=True)
            else:
                table.add_row(*cells, key=name)
            old = before.get(name)
            if old is not None and old != row.state and row.state in ("failed", "lost", "finished", "stopped"):
                sev = "error" if row.state in ("failed", "lost") else "information"
                why = f": {row.error}" if row.error and row.state == "failed" else ""
                self.app.notify(f"run {name} {row.state}{why}", severity=sev)
        if first and self.app.current_run is not None and self.app.current_run.name in table.rows:
            table.move_cursor(row=table.get_row_index(self.app.current_run.name))
        self._show_detail()

    def _styled(self, cells):
        from rich.text import Text

        name, state, *rest = cells
        mark = "+" if name in self.app.overlay else " "
        return (f"{mark}{name}", Text(state, style=STATE_STYLE.get(state, "")), *rest)

    def _selected(self):
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.watcher.rows.get(key)

    def _show_detail(self) -> None:
        detail = self.query_one("#runs-detail", Static)
        row = self._selected()
        if row is None:
            detail.update(f"no runs in {self.app.runs_dir}: press n to start one")
            return
        lines = [f"{row.name}  {row.state}  {row.run.path}"]
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
        else:
            self.app.overlay.append(row.name)
        self.query_one(DataTable).update_cell(row.name, "run", self._styled(row.cells())[0])

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
