"""What a figure shows, as plain data: lines, histograms or a heatmap, with titles, axis labels,
the runs and checkpoint steps. No matplotlib here: the TUI and the CLI build these, `render`
draws them, and `csv_text` exports exactly the plotted numbers.

    fig = LineFigure(kind="sweep", name="sweep-acc-cpu-demo", title="held-out exact match vs r",
                     subtitle="cpu-demo, checkpoint step 1600", xlabel="r (core iterations)",
                     ylabel="exact match (fraction)", lines=[Line("level 4", [1, 2, 4], [0.05, 0.28, 0.98])])
    csv_text(fig)      # series,r (core iterations),exact match (fraction) / level 4,1,0.05 / ...
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field

from recurlab.errors import FigureError

__all__ = ["FigureError", "HeatFigure", "HistFigure", "Line", "LineFigure", "csv_text"]


@dataclass
class Line:
    label: str
    xs: list[float]
    ys: list[float]
    faint: bool = False  # drawn thinner and lighter (random starts behind the main trajectory)
    mark_ends: bool = False  # a marker at the first and the last point (trajectories)
    yerr: list[float] | None = None  # error bars, e.g. lm-eval's standard errors


@dataclass
class LineFigure:
    kind: str
    name: str  # file name stem, e.g. "curves-train-loss-cpu-demo"
    title: str
    subtitle: str  # the runs and checkpoint steps
    xlabel: str
    ylabel: str
    lines: list[Line] = field(default_factory=list)
    logx: bool = False
    logy: bool = False
    xticks: list[float] | None = None  # e.g. the r values of a sweep
    equal_aspect: bool = False  # PCA planes


@dataclass
class HistFigure:
    """One histogram per group, side by side, over the integer values 1..max_value."""

    kind: str
    name: str
    title: str
    subtitle: str
    xlabel: str
    ylabel: str
    groups: list[tuple[str, list[int]]] = field(default_factory=list)
    max_value: int = 1

    def counts(self, values: list[int]) -> list[int]:
        out = [0] * self.max_value
        for v in values:
            out[min(max(int(v), 1), self.max_value) - 1] += 1
        return out

    def shares(self, values: list[int]) -> list[float]:
        """Percent of the group's values at each of 1..max_value (what is drawn)."""
        n = max(len(values), 1)
        return [100.0 * c / n for c in self.counts(values)]


@dataclass
class HeatFigure:
    """Rows (tokens, outer steps) by columns (iterations, positions); None is a cell with no value."""

    kind: str
    name: str
    title: str
    subtitle: str
    xlabel: str
    ylabel: str
    value_label: str  # the colour bar's label
    matrix: list[list[float | None]] = field(default_factory=list)
    row_labels: list[str] = field(default_factory=list)
    log_values: bool = False
    binary: bool = False  # top-1 flips: 0 or 1
    divider: int | None = None  # rows from here on are generated (drawn as a line)
    marks: list[tuple[int, int]] = field(default_factory=list)  # (column, row) cells to mark, e.g. exits
    mark_label: str = ""
    first_column: int = 1  # the number of the first column (iterations count from 1, positions from 0)
    col_labels: list[str] | None = None  # named columns (e.g. r values) instead of numbered ones
    value_range: tuple[float, float] | None = None  # fixed colour scale, e.g. (0, 1) for accuracy
    annotate: bool = False  # write each cell's value in it


Figure = LineFigure | HistFigure | HeatFigure


def _num(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, float):  # repr round-trips exactly; whole numbers (steps, r) without ".0"
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    return str(v)


def csv_text(fig: Figure) -> str:
    """The plotted series as CSV, one row per point (long format, so that any tool re-plots it)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if isinstance(fig, LineFigure):
        errs = any(line.yerr for line in fig.lines)
        w.writerow(["series", fig.xlabel, fig.ylabel] + (["standard error"] if errs else []))
        for line in fig.lines:
            for i, (x, y) in enumerate(zip(line.xs, line.ys)):
                err = [_num(line.yerr[i]) if line.yerr else ""] if errs else []
                w.writerow([line.label, _num(x), _num(y)] + err)
    elif isinstance(fig, HistFigure):
        w.writerow(["group", fig.xlabel, "count", fig.ylabel])
        for label, values in fig.groups:
            for i, (n, share) in enumerate(zip(fig.counts(values), fig.shares(values)), start=1):
                w.writerow([label, i, n, _num(share)])
    else:
        w.writerow(["row", fig.ylabel, fig.xlabel, fig.value_label])
        for i, (label, row) in enumerate(zip(fig.row_labels, fig.matrix)):
            for j, v in enumerate(row):
                col = fig.col_labels[j] if fig.col_labels else j + fig.first_column
                w.writerow([i, label, col, _num(v)])
    return buf.getvalue()
