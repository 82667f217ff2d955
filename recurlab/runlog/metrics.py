"""One run's metrics as the Curves screen needs them: an incremental tail into a RunSeries that
notices deletion, truncation and replacement of the file, backed by the derived series cache.

    src = MetricsSource(run)
    while src.update():          # in a worker thread; True while rows were added
        ...
    src.snapshot("train", "loss"); src.events   # ["truncated", "deleted", ...] to report

Opening a run: if `metrics.jsonl.derived.npz` still describes the log (see runlog.cache), the
series come from it and only the bytes appended since are parsed. Otherwise a large log shows
its last PREVIEW_BYTES at once (the `preview`, drawn after what has loaded so far) while the
whole file is read from the start in CHUNK_BYTES pieces, so a million rows never sit in memory
as text and the screen draws as they arrive; once caught up, the cache is written. A live log
rewrites its cache only after it has grown by a quarter (and at least CACHE_MIN_BYTES) since.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from recurlab.rundir import MetricsTail, RunDir
from recurlab.runlog.cache import SeriesCache
from recurlab.runlog.series import RunSeries
from recurlab.runlog.watch import tail_rows

CHUNK_BYTES = 4 * 1024 * 1024
PREVIEW_BYTES = 1024 * 1024
CACHE_MIN_BYTES = 4 * 1024 * 1024


class MetricsSource:
    def __init__(self, run: RunDir, use_cache: bool = True):
        self.run = run
        self.series = RunSeries()
        self.tail = MetricsTail(run.metrics_path)
        self.cache = SeriesCache(run.metrics_path) if use_cache else None
        self.lock = threading.Lock()
        self.events: list[str] = []
        self.deleted = False
        self.from_cache = False  # whether the first rows came from the derived cache
        self.caught_up = False  # the log has been read to its end at least once
        self.preview: RunSeries | None = None  # the log's tail while its head is still loading
        self._preview_end = 0
        self._opened = False
        self._cached_offset = 0  # log bytes the cache file on disk covers
        self._ident: tuple[int, int] | None = None  # (inode, size) after the last read

    @property
    def loading(self) -> bool:
        return self.preview is not None

    def unchanged(self) -> bool:
        """True if a read now would find nothing new: caught up, no events to report, and the log
        still has the inode and size of the last read. One stat: cheap enough for the UI thread."""
        if not self.caught_up or self._ident is None or self.events:
            return False
        try:
            st = os.stat(self.tail.path)
        except OSError:
            return False  # gone or unreadable: update() notices and reports it
        return (st.st_ino, st.st_size) == self._ident

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
                self.preview = None
            self.tail = MetricsTail(self.tail.path)
            self._cached_offset = 0
            self.caught_up = False
        if not self._opened:
            self._opened = True
            if self._open(st):
                self._ident = (st.st_ino, self.tail.offset)
                return True
        rows = self.tail.read_new(max_bytes=CHUNK_BYTES)
        self._ident = (st.st_ino, self.tail.offset)
        if not rows:
            self.caught_up = True
            self._maybe_save()
            return False
        with self.lock:
            self.series.add_rows(rows)
            if self.preview is not None and self.tail.offset >= self._preview_end:
                self.preview = None  # the full read has caught up with the tail shown first
        return True

    def _open(self, st: os.stat_result) -> bool:
        """From the cache, or a preview of the tail of a large log. True if rows were added."""
        hit = self.cache.load() if self.cache is not None else None
        if hit is not None:
            series, offset = hit
            with self.lock:
                self.series = series
            self.tail.offset, self.tail._inode = offset, st.st_ino
            self._cached_offset = offset
            self.from_cache = True
            return True
        if st.st_size > 2 * PREVIEW_BYTES:
            rows, end = tail_rows(self.tail.path, PREVIEW_BYTES)
            preview = RunSeries()
            preview.add_rows(rows)
            with self.lock:
                self.preview = preview
            self._preview_end = end
            return bool(preview.rows)
        return False

    def _maybe_save(self) -> None:
        """Caught up with the log: write the cache if enough new bytes were parsed since it was written."""
        if self.cache is None:
            return
        new = self.tail.offset - self._cached_offset
        if new >= max(CACHE_MIN_BYTES, self._cached_offset // 4):
            with self.lock:  # copy the columns, then write without holding up the screen
                columns, rows = self.series.columns(), self.series.rows
            ok = self.cache.save(columns, rows, self.tail.offset)
            if ok:
                self._cached_offset = self.tail.offset

    def snapshot(self, kind: str, field: str, r: int | None = None):
        with self.lock:
            xs, ys = self.series.series(kind, field, r)
            if self.preview is not None:  # the tail shown while the head loads: after what has loaded
                px, py = self.preview.series(kind, field, r)
                later = px > (xs[-1] if len(xs) else -np.inf)
                xs, ys = np.concatenate([xs, px[later]]), np.concatenate([ys, py[later]])
            return xs, ys

    def eval_rs(self) -> list[int]:
        with self.lock:
            rs = set(self.series.eval_rs())
            if self.preview is not None:
                rs.update(self.preview.eval_rs())
            return sorted(rs)
