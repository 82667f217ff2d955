"""One run's metrics as the curves screen needs them: an incremental tail into a RunSeries that
notices deletion, truncation and replacement of the file.

    src = MetricsSource(run)
    while src.update():          # in a worker thread; True while rows were added
        ...
    src.series.series("train", "loss"); src.events   # ["truncated", "deleted", ...] to report

A large file is read in CHUNK_BYTES pieces, so loading a million rows never holds the whole
file in memory and the screen can draw what has arrived so far.
"""

from __future__ import annotations

import os
import threading

from recurlab.rundir import MetricsTail, RunDir
from recurlab.tui.series import RunSeries

CHUNK_BYTES = 4 * 1024 * 1024


class MetricsSource:
    def __init__(self, run: RunDir):
        self.run = run
        self.series = RunSeries()
        self.tail = MetricsTail(run.metrics_path)
        self.lock = threading.Lock()
        self.events: list[str] = []
        self.deleted = False
        self._ident: tuple[int, int] | None = None  # (inode, size) after the last read

    def update(self) -> bool:
        """Read the next chunk of new rows; True if any were added."""
        if not self.run.path.exists():
            if not self.deleted:
                self.deleted = True
                self.events.append("deleted")
            return False
        self.deleted = False
        try:
            st = os.stat(self.tail.path)
        except OSError:
            return False
        if self._ident is not None and (st.st_ino != self._ident[0] or st.st_size < self._ident[1]):
            # replaced or truncated (e.g. a resume dropped rows past its checkpoint): start over
            self.events.append("truncated")
            with self.lock:
                self.series.clear()
            self.tail = MetricsTail(self.tail.path)
        rows = self.tail.read_new(max_bytes=CHUNK_BYTES)
        self._ident = (st.st_ino, self.tail.offset)
        if not rows:
            return False
        with self.lock:
            self.series.add_rows(rows)
        return True

    def snapshot(self, kind: str, field: str, r: int | None = None):
        with self.lock:
            return self.series.series(kind, field, r)

    def eval_rs(self) -> list[int]:
        with self.lock:
            return self.series.eval_rs()
