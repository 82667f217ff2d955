"""What the screens that run a job over several r share (Sweep, Eval): s starts it in a background
worker, c cancels it (what finished is kept and saved), [ and ] page through the saved results,
and a finished job's result is shown.

    class SweepScreen(ResultScreen):
        BINDINGS = result_bindings("Sweep")
        JOB, A_JOB, WHAT, STATUS = "sweep", "a sweep", "sweep", "#sweep-status"   # and NO_SAVED, CANCELLING
        def read_saved(self): return load_sweeps(run)        # the saved results, oldest first
        def show_saved(self, index): ...                     # put self.saved[index] on screen
        def show_none(self): ...                             # nothing is saved yet
        def finished_notice(self, result, state): return f"sweep {state}: ..."
        def action_start(self):
            if self.may_start(run is not None): self.sweep(..., self.begin("sweeping ..."))

        @work(thread=True, exclusive=True, group="sweep")
        def sweep(self, ..., cancel): self.run_job(lambda: run_sweep(..., cancel=cancel))
"""

from __future__ import annotations

import threading

from textual.binding import Binding
from textual.widgets import Static

from recurlab.tui.screens.base import LabScreen


def result_bindings(start: str) -> list[Binding]:
    """s (labelled `start`), c, [ and ]."""
    return [
        Binding("s", "start", start),
        Binding("c", "cancel", "Cancel"),
        Binding("left_square_bracket", "saved(-1)", "Older", key_display="["),  # all four fit at 80 columns
        Binding("right_square_bracket", "saved(1)", "Newer", key_display="]"),
    ]


class ResultScreen(LabScreen):
    JOB = ""  # what runs, as its notices name it: "sweep", "evaluation"
    A_JOB = ""  # the same with its article: "a sweep", "an evaluation"
    WHAT = ""  # the prefix of the screen's error notices: "sweep", "eval"
    STATUS = ""  # the id of the screen's status line
    NO_SAVED = ""  # the notice of [ or ] when nothing is saved
    CANCELLING = ""  # the status line once c was pressed

    def __init__(self):
        super().__init__()
        self.rows: list[dict] = []
        self.saved: list = []  # the saved results, oldest first
        self.shown = -1  # the index in `saved` on screen
        self.cancel_event: threading.Event | None = None  # set while a job runs

    def _status(self, text: str) -> None:
        self.query_one(self.STATUS, Static).update(text)

    # ---- what each screen says ------------------------------------------------------------------
    def read_saved(self) -> list:
        raise NotImplementedError

    def show_saved(self, index: int) -> None:
        raise NotImplementedError

    def show_none(self) -> None:
        raise NotImplementedError

    def draw(self) -> None:
        raise NotImplementedError

    def finished_notice(self, result, state: str) -> str:
        """The notice of a job that ended (`state`: finished or cancelled)."""
        raise NotImplementedError

    def job_error(self, exc: Exception) -> str:
        """A job raised: say so (a notice and the error line) and return the reason in one line."""
        self.report(exc, self.WHAT)
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__

    def job_failed(self, reason: str) -> None:
        """After a job raised and `job_error` said why."""

    def after_finish(self, result) -> None:
        """After a finished job's saved results were read again and the newest is shown."""

    # ---- the shared logic -------------------------------------------------------------------------
    def load_saved(self, show_last: bool = False) -> None:
        self.saved = self.read_saved()
        if show_last and self.saved:
            self.show_saved(len(self.saved) - 1)
        elif not self.saved:
            self.show_none()

    def may_start(self, has_target: bool) -> bool:
        """Whether s may start a job now; a notice says why not."""
        if not has_target:
            self.app.notify("no run selected: pick one on the Runs screen", severity="warning")
            return False
        if self.cancel_event is not None:
            self.app.notify(f"{self.A_JOB} is already running; c cancels it", severity="warning")
            return False
        return True

    def begin(self, status: str) -> threading.Event:
        """A job passed its checks and the screen's rows were reset: draw them, show `status` and
        return the new job's cancel flag."""
        self.draw()
        self.cancel_event = threading.Event()
        self._status(status)
        return self.cancel_event

    def run_job(self, job) -> None:
        """In the worker thread: `job()`, then `finish` with its result on the UI thread (with None
        and the reason after an error: a missing checkpoint, a deleted run, a bad task)."""
        try:
            result = job()
        except Exception as exc:
            reason = self.app.call_from_thread(self.job_error, exc)
            self.app.call_from_thread(self.finish, None, reason)
            return
        self.app.call_from_thread(self.finish, result)

    def finish(self, result, reason: str = "") -> None:
        self.cancel_event = None
        if result is None:
            self.job_failed(reason)
            return
        self.app.notify(self.finished_notice(result, "finished" if result.complete else "cancelled"))
        self.load_saved(show_last=True)
        self.after_finish(result)

    def action_cancel(self) -> None:
        if self.cancel_event is None:
            self.app.notify(f"no {self.JOB} is running")
            return
        self.cancel_event.set()
        self._status(self.CANCELLING)

    def action_saved(self, delta: int) -> None:
        if not self.saved:
            self.app.notify(self.NO_SAVED)
            return
        self.show_saved(min(max(self.shown + delta, 0), len(self.saved) - 1))
