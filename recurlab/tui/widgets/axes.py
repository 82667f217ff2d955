"""Axis ticks for the TUI's plotext plots: whole-number steps, and r on a log2 axis.

    plt.xticks(*step_ticks(0, 1600))                 # 0, 400, 800, 1200, 1600
    plt.plot(log2_positions(rs), ys); plt.xticks(*r_ticks(rs))

plotext picks its own tick values (400.8, 800.5, ... for steps) and its log scale is base 10,
which bunches r = 1, 2, 4, 8 and 32 together; so steps get round integer ticks, and r is plotted
as log2(r) on a linear axis with ticks labelled by r itself, as papers draw it.
"""

from __future__ import annotations

import math


def step_ticks(lo: float, hi: float, count: int = 5) -> tuple[list[float], list[str]]:
    """About `count` integer ticks between lo and hi at a round spacing (1, 2, 4 or 5 times a power
    of ten), with their labels."""
    lo, hi = math.ceil(lo), math.floor(hi)
    if hi <= lo:
        return [float(lo)], [str(int(lo))]
    raw = (hi - lo) / max(count - 1, 1)
    power = 10 ** max(math.floor(math.log10(raw)), 0)
    spacing = next((m * power for m in (1, 2, 4, 5, 10) if m * power >= raw), 10 * power)
    first = math.ceil(lo / spacing) * spacing
    ticks = list(range(int(first), int(hi) + 1, int(spacing)))
    return [float(t) for t in ticks], [f"{t}" for t in ticks]


def log2_positions(rs) -> list[float]:
    """Where each r sits on the log2 axis."""
    return [math.log2(r) for r in rs]


def r_ticks(rs) -> tuple[list[float], list[str]]:
    """One tick per distinct r, at log2(r), labelled with r."""
    distinct = sorted(set(int(r) for r in rs))
    return log2_positions(distinct), [str(r) for r in distinct]
