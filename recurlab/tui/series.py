"""Metric histories for the curves screen: compact columns, incremental append, downsampling
and a time-weighted EMA. No Textual and no torch here, so it is cheap to test and to import.

    store = RunSeries()
    store.add_rows(MetricsTail(run.metrics_path).read_new())
    xs, ys = store.series("train", "loss")                 # numpy arrays, all points
    xs, ys = downsample(xs, ys, 400)                        # min/max per bucket: spikes survive
    ys = ema(xs, ys, span=0.05 * (xs[-1] - xs[0]))          # copes with uneven step gaps

Train rows keep step, time and the TRAIN_FIELDS; eval rows are grouped by r. Columns are
`array('d')` (8 bytes a value), so a million rows cost tens of megabytes, not hundreds.
"""

from __future__ import annotations

import math
from array import array

import numpy as np

TRAIN_FIELDS = ("loss", "lr", "tokens_per_s", "grad_norm")
EVAL_FIELDS = ("loss", "acc")

# (label, kind, field): the metrics a user can cycle through on the curves screen
METRICS = (
    ("train loss", "train", "loss"),
    ("eval loss per r", "eval", "loss"),
    ("eval accuracy per r", "eval", "acc"),
    ("learning rate", "train", "lr"),
    ("tokens/s", "train", "tokens_per_s"),
    ("grad norm", "train", "grad_norm"),
)


def _num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


class RunSeries:
    """All metric rows of one run, as columns. `version` grows with every append."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.train = {k: array("d") for k in ("step", "time", *TRAIN_FIELDS)}
        self.eval: dict[int, dict[str, array]] = {}
        self.rows = 0
        self.version = 0

    def add_rows(self, rows: list[dict]) -> int:
        """Append parsed metric rows; rows without a step are skipped. Returns how many were kept."""
        train = [r for r in rows if r.get("kind") == "train" and r.get("step") is not None]
        self._extend(self.train, train, TRAIN_FIELDS)
        evals = [r for r in rows if r.get("kind") == "eval" and r.get("step") is not None and r.get("r") is not None]
        by_r: dict[int, list[dict]] = {}
        for row in evals:
            by_r.setdefault(int(row["r"]), []).append(row)
        for r, group in by_r.items():
            cols = self.eval.get(r)
            if cols is None:
                cols = self.eval[r] = {k: array("d") for k in ("step", "time", *EVAL_FIELDS)}
            self._extend(cols, group, EVAL_FIELDS)
        kept = len(train) + len(evals)
        if kept:
            self.rows += kept
            self.version += 1
        return kept

    @staticmethod
    def _extend(cols: dict[str, array], rows: list[dict], fields) -> None:
        # column by column: one list comprehension per field is several times faster than
        # appending row by row, which matters for a million-row history
        for f in ("step", "time", *fields):
            values = [r.get(f) for r in rows]
            col, n = cols[f], len(cols[f])
            try:
                col.extend(values)
            except TypeError:  # a missing or non-numeric value: undo the partial extend, NaN for those
                del col[n:]
                col.extend([_num(v) for v in values])

    def series(self, kind: str, field: str, r: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        cols = self.train if kind == "train" else self.eval.get(r)
        if cols is None or field not in cols:
            return np.empty(0), np.empty(0)
        xs = np.frombuffer(cols["step"], dtype=np.float64).copy()
        ys = np.frombuffer(cols[field], dtype=np.float64).copy()
        ok = np.isfinite(ys) & np.isfinite(xs)
        return xs[ok], ys[ok]

    def eval_rs(self) -> list[int]:
        return sorted(self.eval)

    def last(self, kind: str, field: str, r: int | None = None) -> float | None:
        xs, ys = self.series(kind, field, r)
        return float(ys[-1]) if len(ys) else None


def downsample(xs: np.ndarray, ys: np.ndarray, n_buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """At most 2 * n_buckets points: the min and the max of each bucket, in x order."""
    n = len(xs)
    if n <= 2 * n_buckets or n_buckets < 1:
        return xs, ys
    size = n // n_buckets
    m = size * n_buckets
    yb = ys[:m].reshape(n_buckets, size)
    xb = xs[:m].reshape(n_buckets, size)
    rows = np.arange(n_buckets)
    lo, hi = yb.argmin(axis=1), yb.argmax(axis=1)
    first, second = np.minimum(lo, hi), np.maximum(lo, hi)
    out_x = np.column_stack([xb[rows, first], xb[rows, second]]).ravel()
    out_y = np.column_stack([yb[rows, first], yb[rows, second]]).ravel()
    if m < n:  # keep the newest point visible
        out_x, out_y = np.append(out_x, xs[-1]), np.append(out_y, ys[-1])
    return out_x, out_y


def bucket_mean(xs: np.ndarray, ys: np.ndarray, n_buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean x and y of each of n_buckets equal-count buckets (the input for smoothing)."""
    n = len(xs)
    if n <= n_buckets or n_buckets < 1:
        return xs, ys
    edges = np.linspace(0, n, n_buckets + 1).astype(np.int64)
    counts = np.diff(edges)
    sx = np.add.reduceat(xs, edges[:-1]) / counts
    sy = np.add.reduceat(ys, edges[:-1]) / counts
    return sx, sy


def ema(xs: np.ndarray, ys: np.ndarray, span: float) -> np.ndarray:
    """Time-weighted EMA: a point's weight decays with the x distance (steps), not the index,
    so uneven logging intervals and downsampled inputs smooth the same way."""
    out = np.empty_like(ys)
    if len(ys) == 0:
        return out
    span = max(float(span), 1e-12)
    s = float(ys[0])
    out[0] = s
    gaps = np.diff(xs)
    keep = np.exp(-np.maximum(gaps, 0.0) / span)
    for i in range(1, len(ys)):
        s = keep[i - 1] * s + (1.0 - keep[i - 1]) * ys[i]
        out[i] = s
    return out


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
