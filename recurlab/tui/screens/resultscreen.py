"""What the Sweep and Eval screens share: s starts a job over several r in a background worker,
c cancels it (what finished is kept and saved), [ and ] page through the saved results, and a
finished job's result is shown.

    class SweepScreen(ResultScreen):        # in a module whose docstring is the screen's help
        TITLE_SHORT, MODE = "Sweep", "sweep"  # ids: #sweep-table (focused first), #sweep-status
        BINDINGS = result_bindings("Sweep")
        WORDS = ResultWords("sweep", "a sweep", no_saved="no saved sweeps for this run", cancelling="...")
        def read_saved(self): return load_sweeps(run)        # oldest first
        def show_saved(self, index): ...                     # put self.saved[index] on screen
        def show_none(self): ...                             # nothing saved yet

        @work(thread=True, exclusive=True, group="sweep")
        def sweep(self, ...): self.run_job(lambda: run_sweep(...))
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

from textual.binding import Binding
from textual.widgets import Static

from recurlab.tui.screens.base import LabScreen


def result_bindings(start: str) -> list[Binding]:
    """s (labelled `start`), c, [ and ]."""
    return [
        Binding("s", "start", start),
        Binding("c", "cancel", "Cancel"),
        Binding("left_square_bracket", "saved(-1)", "Older", key_display="["),
        Binding("right_square_bracket", "saved(1)", "Newer", key_display="]"),
    ]


@dataclass(frozen=True)
class ResultWords:
    job: str  # what runs, as notices name it: "sweep", "evaluation"
    a_job: str  # the same with its article: "a sweep", "an evaluation"
    no_saved: str  # the notice of [ or ] when nothing is saved
    cancelling: str  # the status line once c was pressed


class ResultScreen(LabScreen):
    WORDS = ResultWords("", "", "", "")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.HELP = (sys.modules[cls.__module__].__doc__ or "").split("\n", 1)[-1]
        cls.AUTO_FOCUS = f"#{cls.MODE}-table"  # not a text box: digits and ? must reach the app

    def __init__(self):
        super().__init__()
        self.rows: list[dict] = []
        self.saved: list = []  # the saved results, oldest first
        self.shown = -1  # the index in `saved` on screen
        self.cancel_event: threading.Event | None = None  # set while a job runs

    def _status(self, text: str) -> None:
        self.query_one(f"#{self.MODE}-status", Static).update(text)

    # ---- hooks ---------------------------------------------------------------------------------
    def read_saved(self) -> list:
        raise NotImplementedError

    def show_saved(self, index: int) -> None:
        raise NotImplementedError

    def show_none(self) -> None:
        raise NotImplementedError

    def finished_notice(self, result, state: str) -> str:
        """The notice of a finished (`state`: finished or cancelled) job."""
        raise NotImplementedError

    def after_finish(self, result) -> None:
        """After a finished job's saved results were read again."""

    def job_failed(self) -> None:
        """After a job raised (the notice has said what)."""

    # ---- the shared logic ----------------------------------------------------------------------
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
            self.app.notify(f"{self.WORDS.a_job} is already running; c cancels it", severity="warning")
            return False
        return True

    def run_job(self, job) -> None:
        """In a worker thread: `job()` -> its result, then `finish` on the UI thread (None after an
        error, which becomes a notice: a missing checkpoint, a deleted run, a bad task)."""
        try:
            result = job()
        except Exception as exc:
            self.app.call_from_thread(self.report, exc, self.MODE)
            self.app.call_from_thread(self.finish, None)
            return
        self.app.call_from_thread(self.finish, result)

    def finish(self, result) -> None:
        self.cancel_event = None
        if result is None:
            self.job_failed()
            return
        self.app.notify(self.finished_notice(result, "finished" if result.complete else "cancelled"))
        self.load_saved(show_last=True)
        self.after_finish(result)

    def action_cancel(self) -> None:
        if self.cancel_event is None:
            self.app.notify(f"no {self.WORDS.job} is running")
            return
        self.cancel_event.set()
        self._status(self.WORDS.cancelling)

    def action_saved(self, delta: int) -> None:
        if not self.saved:
            self.app.notify(self.WORDS.no_saved)
            return
        self.show_saved(min(max(self.shown + delta, 0), len(self.saved) - 1))
