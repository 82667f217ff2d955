"""Poll a runs directory for the runs screen: state, step, loss, tokens/s and recent losses.

    watch = RunsWatch("runs")
    changes = watch.poll()          # RunsChange(added, removed, updated)
    for name, row in watch.rows.items(): row.state, row.step, row.loss, row.spark

Only status.json and the tail of metrics.jsonl are read: the first look at a run with a
million metric rows reads its last 64 KiB, later polls only what was appended since.
No Textual, no torch and no numpy here (the Runs screen's first frame waits for neither).
"""

from __future__ import annotations

import math
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from recurlab.rundir import MetricsTail, RunDir, is_run, parse_jsonl

SPARK_POINTS = 24
TAIL_BYTES = 64 * 1024


def tail_rows(path: Path, nbytes: int = TAIL_BYTES) -> tuple[list[dict], int]:
    """Complete JSON rows in the last `nbytes` of a file, and the offset after the last one."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - nbytes)
            f.seek(start)
            data = f.read()
    except OSError:
        return [], 0
    if start > 0:
        cut = data.find(b"\n")
        data = data[cut + 1 :] if cut >= 0 else b""
        start = size - len(data)
    end = data.rfind(b"\n")
    if end < 0:
        return [], start
    return parse_jsonl(data[: end + 1]), start + end + 1


@dataclass
class RunRow:
    run: RunDir
    state: str = "unknown"
    step: int | None = None
    max_steps: int | None = None
    loss: float | None = None
    tokens_per_s: float | None = None
    error: str | None = None
    status: dict = field(default_factory=dict)  # all of status.json, for the run table's filter and sort
    losses: deque = field(default_factory=lambda: deque(maxlen=SPARK_POINTS))
    tail: MetricsTail | None = None

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def spark(self) -> str:
        return sparkline(self.losses, SPARK_POINTS)

    def cells(self) -> tuple[str, ...]:
        step = "-" if self.step is None else str(self.step)
        if self.max_steps:
            step += f"/{self.max_steps}"
        loss = "-" if self.loss is None else f"{self.loss:.4f}"
        tps = "-" if self.tokens_per_s is None else f"{self.tokens_per_s:,.0f}"
        return (self.name, self.state, step, loss, tps, self.spark)


@dataclass
class RunsChange:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.updated)


class RunsWatch:
    def __init__(self, runs_dir: str | Path):
        self.runs_dir = Path(runs_dir)
        self.rows: dict[str, RunRow] = {}

    def poll(self, tails: bool = True) -> RunsChange:
        """What changed since the last poll. tails=False reads status.json only: the sparklines
        fill on the next poll (the Runs screen's first frame waits for 200 statuses, not 200 tails)."""
        change = RunsChange()
        # list_runs' order (creation time, then name) from the status each refresh reads anyway:
        # one status.json read per run and poll, not two (200 runs, every second)
        root = self.runs_dir
        try:
            entries = list(root.iterdir()) if root.is_dir() else []
        except OSError:  # the folder turned unreadable meanwhile: keep the rows until it is back
            return change
        found = {p.name: RunDir(p) for p in entries if is_run(p)}
        for name in list(self.rows):
            if name not in found:
                del self.rows[name]
                change.removed.append(name)
        for name, run in found.items():
            row = self.rows.get(name)
            if row is None:
                row = self.rows[name] = RunRow(run)
                change.added.append(name)
            if self._refresh(row, tails) and name not in change.added:
                change.updated.append(name)
        order = sorted(self.rows.values(), key=lambda r: (r.status.get("created") or 0, r.name))
        if [r.name for r in order] != list(self.rows):
            self.rows = {r.name: r for r in order}
        return change

    def _refresh(self, row: RunRow, tails: bool = True) -> bool:
        before = row.cells()
        status = row.run.read_status()
        row.state = row.run.effective_state(status) if status else "unreadable"
        row.step = status.get("step")
        row.max_steps = status.get("max_steps")
        row.loss = status.get("loss")
        row.tokens_per_s = status.get("tokens_per_s")
        row.error = status.get("error")
        row.status = status
        if not tails:
            return row.cells() != before
        if row.tail is None:
            rows, offset = tail_rows(row.run.metrics_path)
            row.tail = MetricsTail(row.run.metrics_path)
            row.tail.offset = offset
        else:
            size_before = row.tail.offset
            rows = row.tail.read_new()
            if row.tail.offset < size_before:  # truncated or replaced: rebuild from the tail
                row.losses.clear()
        for r in rows:
            if r.get("kind") == "train" and isinstance(r.get("loss"), (int, float)):
                row.losses.append(float(r["loss"]))
        return row.cells() != before


def sparkline(values, width: int = 20) -> str:
    """A unicode block sparkline of the last `width` values (empty for no data)."""
    vals = [v for v in list(values)[-width:] if v is not None and math.isfinite(v)]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    blocks = "▁▂▃▄▅▆▇█"
    if hi - lo < 1e-12:
        return blocks[3] * len(vals)
    return "".join(blocks[min(7, int((v - lo) / (hi - lo) * 8))] for v in vals)
