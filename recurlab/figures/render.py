"""Draw a figure spec with matplotlib (the optional extra `recurlab[plot]`) into PNG, SVG or PDF
bytes. Uses matplotlib's object API (no pyplot, no GUI backend), so it runs in a TUI worker thread.

    png = render(fig, "png", size=(960, 600), dpi=150)   # exactly 960 x 600 pixels

Readable in greyscale: every line has its own dash pattern and marker besides its colour, the
histograms their own hatching, the heatmaps a colour map whose lightness rises monotonically.
SVG keeps text as text (svg.fonttype none), so titles, labels and run names stay searchable
and editable.
"""

from __future__ import annotations

import io
import math
import textwrap

from recurlab.figures.spec import FigureError, HeatFigure, HistFigure, LineFigure

FORMATS = ("png", "svg", "pdf")
INSTALL_HINT = "pip install 'recurlab[plot]'"
# Okabe-Ito colours (distinct for colour-blind readers), each paired with a dash and a marker
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#000000", "#E69F00", "#56B4E9", "#999999")
DASHES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (8, 2)), (0, (1, 1)), (0, (3, 1, 1, 1)))
MARKERS = ("o", "s", "^", "D", "v", "x", "P", "*")
HATCHES = ("", "//", "..", "xx", "\\\\", "++", "oo", "--")


def matplotlib_modules():
    """(Figure, rc_context), or FigureError naming the extra to install."""
    try:
        from matplotlib import rc_context
        from matplotlib.figure import Figure
    except ImportError:
        raise FigureError(f"figures need matplotlib, which is not installed: {INSTALL_HINT}") from None
    return Figure, rc_context


def check_formats(formats: list[str]) -> list[str]:
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise FigureError(f"unknown figure format {', '.join(bad) or '(none)'}: use png, svg and/or pdf, e.g. --format png,svg")
    return formats


def render(fig, fmt: str, size: tuple[int, int] = (960, 600), dpi: int = 150) -> bytes:
    Figure, rc_context = matplotlib_modules()
    check_formats([fmt])
    w, h = size
    if w < 200 or h < 150 or dpi < 30:
        raise FigureError(f"figure size {w}x{h} at {dpi} dpi is too small: use at least 200x150 pixels and 30 dpi")
    style = {"svg.fonttype": "none", "svg.hashsalt": "recurlab", "font.size": 9, "axes.titlesize": 10,
             "legend.fontsize": 8, "axes.grid": True, "grid.alpha": 0.3}
    with rc_context(style):
        mfig = Figure(figsize=(w / dpi, h / dpi), dpi=dpi, layout="constrained")
        if isinstance(fig, LineFigure):
            _lines(mfig, fig)
        elif isinstance(fig, HistFigure):
            _hists(mfig, fig)
        elif isinstance(fig, HeatFigure):
            _heat(mfig, fig)
        else:
            raise TypeError(f"not a figure spec: {type(fig).__name__}")
        # wrap to the figure's width: about 0.6 em per character at 9 pt
        chars = max(30, int(w / (dpi * 9 / 72 * 0.6)))
        head = [textwrap.fill(fig.title, chars), textwrap.fill(fig.subtitle, chars)]
        mfig.suptitle("\n".join(head), fontsize=9)
        buf = io.BytesIO()
        meta = {"Date": None} if fmt == "svg" else {"CreationDate": None} if fmt == "pdf" else {}
        mfig.savefig(buf, format=fmt, dpi=dpi, metadata=meta)
    return buf.getvalue()


def _lines(mfig, fig: LineFigure) -> None:
    ax = mfig.add_subplot()
    # main lines take the first styles, faint ones (random starts) the next
    order = [ln for ln in fig.lines if not ln.faint] + [ln for ln in fig.lines if ln.faint]
    for ln in fig.lines:
        k = next(i for i, x in enumerate(order) if x is ln)
        n = len(ln.xs)
        kw = dict(color=COLORS[k % len(COLORS)], linestyle=DASHES[k % len(DASHES)], label=ln.label,
                  linewidth=0.9 if ln.faint else 1.6, alpha=0.7 if ln.faint else 1.0)
        if ln.mark_ends:
            ax.plot(ln.xs, ln.ys, marker=MARKERS[k % len(MARKERS)], markersize=3, **kw)
            ax.plot(ln.xs[:1], ln.ys[:1], marker="o", markersize=7, markerfacecolor="white", color=kw["color"], linestyle="")
            ax.plot(ln.xs[-1:], ln.ys[-1:], marker="*", markersize=10, color=kw["color"], linestyle="")
        else:  # about a dozen markers per line, whatever its length
            ax.plot(ln.xs, ln.ys, marker=MARKERS[k % len(MARKERS)], markevery=max(1, math.ceil(n / 12)), markersize=5, **kw)
        if ln.yerr:
            ax.errorbar(ln.xs, ln.ys, yerr=ln.yerr, fmt="none", ecolor=kw["color"], elinewidth=0.9, capsize=3)
    if fig.logy:
        from matplotlib.ticker import FuncFormatter

        ax.set_yscale("log")
        plain = FuncFormatter(lambda v, _pos: f"{v:g}")  # 0.5, not 5 x 10^-1
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(FuncFormatter(_minor_label))
    if fig.logx:
        ax.set_xscale("log", base=2)
    if fig.xticks:
        ax.set_xticks(fig.xticks, [f"{x:g}" for x in fig.xticks])
        ax.minorticks_off()
    if fig.equal_aspect:
        ax.set_aspect("equal", adjustable="datalim")
        ax.plot([], [], marker="o", markerfacecolor="white", color="grey", linestyle="", label="start (iteration 1)")
        ax.plot([], [], marker="*", color="grey", linestyle="", label="last iteration")
    ax.set_xlabel(fig.xlabel)
    ax.set_ylabel(fig.ylabel)
    ax.legend(loc="best", ncols=2 if len(fig.lines) > 8 else 1, framealpha=0.85)


def _minor_label(v: float, _pos) -> str:
    """Label the 2 and 5 of each decade on a log axis, so that short ranges still get numbers."""
    if v <= 0:
        return ""
    m = v / 10 ** math.floor(math.log10(v))
    return f"{v:g}" if abs(m - 2) < 1e-6 or abs(m - 5) < 1e-6 else ""


def _hists(mfig, fig: HistFigure) -> None:
    n = max(len(fig.groups), 1)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    from matplotlib.ticker import MaxNLocator

    axes = mfig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    xs = list(range(1, fig.max_value + 1))
    # tokens that exit early would be slivers on a 1..r axis: end a little after the latest exit
    # seen (the subtitle and the CSV keep the whole range)
    latest = max([v for _, values in fig.groups for v in values] or [fig.max_value])
    right = min(fig.max_value, max(8, latest + 2))
    chars = max(12, int(0.85 * mfig.get_figwidth() * 72 / cols / (8 * 0.6)))  # a panel over 8 pt characters
    for i, (label, values) in enumerate(fig.groups):
        ax = axes[i // cols][i % cols]
        ax.bar(xs, fig.shares(values), width=0.85, color=COLORS[i % len(COLORS)], alpha=0.75,
               hatch=HATCHES[i % len(HATCHES)], edgecolor="black", linewidth=0.5)
        mean = sum(values) / len(values) if values else None
        if mean is not None:
            ax.axvline(mean, color="black", linestyle="--", linewidth=1)
        ax.set_title(textwrap.fill(label + (f", mean {mean:.2f}" if mean is not None else ""), chars), fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        ax.set_xlim(0.4, right + 0.6)
        if i // cols == rows - 1:
            ax.set_xlabel(fig.xlabel)
        if i % cols == 0:
            ax.set_ylabel(fig.ylabel)
    for j in range(len(fig.groups), rows * cols):
        axes[j // cols][j % cols].set_visible(False)


def _heat(mfig, fig: HeatFigure) -> None:
    import numpy as np
    from matplotlib.colors import BoundaryNorm, ListedColormap, LogNorm

    data = np.array([[np.nan if v is None else float(v) for v in row] for row in fig.matrix], dtype=float)
    ax = mfig.add_subplot()
    if fig.binary:
        cmap, norm = ListedColormap(["#f0f0f0", "#303030"]), BoundaryNorm([-0.5, 0.5, 1.5], 2)
    else:
        cmap, norm = "viridis", None
        if fig.value_range is not None:
            from matplotlib.colors import Normalize

            norm = Normalize(*fig.value_range)
        if fig.log_values:
            finite = data[np.isfinite(data) & (data > 0)]
            lo = max(float(finite.min()), 1e-8) if finite.size else 1e-8
            hi = max(float(finite.max()), lo * 10) if finite.size else 1.0
            data = np.where(np.isfinite(data), np.clip(data, lo, None), np.nan)
            norm = LogNorm(vmin=lo, vmax=hi)
    c0 = fig.first_column
    img = ax.imshow(data, aspect="auto", interpolation="nearest", cmap=cmap, norm=norm,
                    extent=(c0 - 0.5, c0 + data.shape[1] - 0.5, data.shape[0] - 0.5, -0.5))
    bar = mfig.colorbar(img, ax=ax, shrink=0.9)
    bar.set_label(fig.value_label)
    if fig.binary:
        bar.set_ticks([0, 1], labels=["same", "changed"])
    if fig.col_labels:
        ax.set_xticks(range(c0, c0 + len(fig.col_labels)), fig.col_labels)
    if fig.annotate:  # the value in each cell, dark on light colours and light on dark ones
        for (i, j), v in np.ndenumerate(data):
            if np.isfinite(v):
                shade = img.cmap(img.norm(v))
                light = 0.299 * shade[0] + 0.587 * shade[1] + 0.114 * shade[2] > 0.5
                ax.text(c0 + j, i, f"{100 * v:.3g}" if fig.value_range == (0.0, 1.0) else f"{v:.3g}",
                        ha="center", va="center", fontsize=7, color="black" if light else "white")
    rows = len(fig.row_labels)
    step = max(1, math.ceil(rows / 40))  # at most ~40 token labels
    ax.set_yticks(range(0, rows, step), fig.row_labels[::step], fontsize=6 if rows > 20 else 8)
    ax.set_xlabel(fig.xlabel)
    ax.set_ylabel(fig.ylabel)
    ax.grid(False)
    if fig.divider is not None:
        ax.axhline(fig.divider - 0.5, color="white", linewidth=1.5)
        ax.axhline(fig.divider - 0.5, color="black", linewidth=0.8, linestyle="--", label="prompt | generated")
    if fig.marks:
        xs, ys = [m[0] for m in fig.marks], [m[1] for m in fig.marks]
        # a black cross on a white halo stays visible on every colour of the map
        ax.plot(xs, ys, linestyle="", marker="x", color="white", markersize=5, markeredgewidth=1.8)
        ax.plot(xs, ys, linestyle="", marker="x", color="black", markersize=5, markeredgewidth=0.9, label=fig.mark_label)
    if fig.divider is not None or fig.marks:
        ax.legend(loc="upper right", fontsize=7, framealpha=0.85)
