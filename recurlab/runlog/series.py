"""Metric histories for the Curves screen and `recurlab plot curves`: compact columns, incremental
append, downsampling and a time-weighted EMA. No Textual and no torch here, so it is cheap to test and to import.

    store = RunSeries()
    store.add_rows(MetricsTail(run.metrics_path).read_new())
    xs, ys = store.series("train", "loss")                 # numpy arrays, all points
    xs, ys = downsample(xs, ys, 120)                        # min/max per plot column: spikes survive
    ys = ema(xs, ys, span=0.05 * (xs[-1] - xs[0]))          # copes with uneven step gaps

Train rows keep step, time and the TRAIN_FIELDS; eval rows are grouped by r. Columns are
`array('d')` (8 bytes a value), so a million rows cost tens of megabytes, not hundreds.
"""

from __future__ import annotations

import math
from array import array

import numpy as np

TRAIN_FIELDS = ("loss", "lr", "tokens_per_s", "grad_norm", "tokens", "r_no_grad", "r_grad", "seq_len", "step_time",
                "distill_kl")
EVAL_FIELDS = ("loss", "acc")

# (label, kind, field): the metrics a user can cycle through on the curves screen
METRICS = (
    ("train loss", "train", "loss"),
    ("eval loss per r", "eval", "loss"),
    ("eval accuracy per r", "eval", "acc"),
    ("learning rate", "train", "lr"),
    ("tokens/s", "train", "tokens_per_s"),
    ("grad norm", "train", "grad_norm"),
    ("distillation KL", "train", "distill_kl"),
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
        self.version = getattr(self, "version", -1) + 1  # never repeats, even across a clear()

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

    def columns(self) -> dict[str, np.ndarray]:
        """Every column as a float64 array, named "train/FIELD" or "eval/R/FIELD" (for the derived cache)."""
        # copies: a live numpy view would stop the array('d') columns from growing (BufferError)
        out = {f"train/{k}": np.frombuffer(col, dtype=np.float64).copy() for k, col in self.train.items()}
        for r, cols in self.eval.items():
            out.update({f"eval/{r}/{k}": np.frombuffer(col, dtype=np.float64).copy() for k, col in cols.items()})
        return out

    @classmethod
    def from_columns(cls, columns: dict[str, np.ndarray], rows: int) -> "RunSeries":
        """The inverse of `columns()`; unknown names are ignored, missing train columns stay empty."""
        store = cls()
        for name, values in columns.items():
            parts = name.split("/")
            if parts[0] == "train" and len(parts) == 2 and parts[1] in store.train:
                store.train[parts[1]].frombytes(np.ascontiguousarray(values, dtype=np.float64).tobytes())
            elif parts[0] == "eval" and len(parts) == 3 and parts[2] in ("step", "time", *EVAL_FIELDS):
                cols = store.eval.setdefault(int(parts[1]), {k: array("d") for k in ("step", "time", *EVAL_FIELDS)})
                cols[parts[2]].frombytes(np.ascontiguousarray(values, dtype=np.float64).tobytes())
        store.rows = rows
        store.version = 1
        return store

    def last(self, kind: str, field: str, r: int | None = None) -> float | None:
        xs, ys = self.series(kind, field, r)
        return float(ys[-1]) if len(ys) else None


def downsample(xs: np.ndarray, ys: np.ndarray, n_columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Min/max per plot column: split the x range into `n_columns` equal columns (the plot's
    character columns) and keep, in x order, the lowest and the highest point of each, plus the
    first and the last point. At most 2 * n_columns + 2 points; every column's extremes (and so
    the series' global extremes and any one-point spike) survive exactly."""
    n = len(xs)
    if n <= 2 * n_columns or n_columns < 1:
        return xs, ys
    if np.any(xs[1:] < xs[:-1]):  # columns need x order (steps normally are)
        order = np.argsort(xs, kind="stable")
        xs, ys = xs[order], ys[order]
    # column boundaries by binary search in the sorted x: no temporary as long as the series
    edges = xs[0] + (xs[-1] - xs[0]) * np.arange(1, n_columns) / n_columns
    bounds = np.unique(np.r_[np.searchsorted(xs, edges), n])
    bounds = bounds[bounds > 0]
    keep, a = [0, n - 1], 0
    for b in bounds:  # one argmin/argmax per column (at most n_columns), vectorised within it
        if b == a:
            continue
        seg = ys[a:b]
        keep += [a + int(seg.argmin()), a + int(seg.argmax())]
        a = b
    keep = np.unique(keep)
    return xs[keep], ys[keep]


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
