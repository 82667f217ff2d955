"""The Sweep screen's accuracy heatmap: one row per task level, one column per r.

    grid = level_grid(load_sweeps(run), step=1600)          # recurlab.sweep: every saved sweep of it
    heatmap = SweepHeatmap(id="sweep-heat")
    heatmap.show(grid, trained={1, 2, 3, 4}, r_mean=8)

A checkpoint's sweeps at the run's own levels and at harder ones (`recurlab sweep RUN
--difficulties 5,6,7,8`, or the screen's levels box) merge into one grid, so trained and
never-trained levels sit one under the other and "more r solves harder levels" shows as green
spreading right and down. Cells are coloured from dark red (0%) through amber to green (100%);
a cell no sweep measured shows a dot. Levels never trained are marked with ▸ and the r_mean
column with ▾.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from recurlab.sweep import LevelGrid

# accuracy 0 -> 0.5 -> 1: dark red, amber, green
STOPS = ((0.0, (110, 20, 25)), (0.5, (190, 140, 20)), (1.0, (30, 150, 60)))
CELL_W = 6


def colour(acc: float) -> tuple[int, int, int]:
    for (a0, c0), (a1, c1) in zip(STOPS, STOPS[1:]):
        if acc <= a1:
            t = (acc - a0) / (a1 - a0)
            return tuple(round(x + (y - x) * max(t, 0.0)) for x, y in zip(c0, c1))
    return STOPS[-1][1]


def render_grid(grid: LevelGrid, trained: set[int], r_mean: int) -> Text:
    text = Text()
    if not grid.levels:
        return Text("no task-level accuracy in this checkpoint's sweeps (text runs have none)")
    label_w = len("level ") + max(len(str(lv)) for lv in grid.levels) + 2
    text.append("r".rjust(label_w - 1) + " ", style="bold")
    for r in grid.rs:
        text.append(f"{r}{'▾' if r == r_mean else ''}".rjust(CELL_W), style="bold")
    text.append("\n")
    for lv in grid.levels:
        mark = " " if lv in trained else "▸"
        text.append(f"{mark}level {lv}".ljust(label_w), style="bold" if lv in trained else "bold italic")
        for r in grid.rs:
            acc = grid.acc.get((lv, r))
            text.append(" ")  # an uncoloured gap, then a coloured cell right-aligned under its r
            if acc is None:
                text.append("·".rjust(CELL_W - 1), style="dim")
            else:
                red, green, blue = colour(acc)
                text.append(f"{100 * acc:{CELL_W - 1}.1f}", style=f"bold white on rgb({red},{green},{blue})")
        text.append("\n")
    new = [lv for lv in grid.levels if lv not in trained]
    legend = f"step {grid.step}: held-out exact match (%); ▾ r_mean = {r_mean}"
    if new:
        legend += f"; ▸ never trained: {', '.join(map(str, new))}"
    text.append(legend + "\n", style="dim")
    text.append("0% ")
    for a in (0.0, 0.25, 0.5, 0.75, 1.0):
        red, green, blue = colour(a)
        text.append("  ", style=f"on rgb({red},{green},{blue})")
    text.append(" 100%")
    return text


class SweepHeatmap(Static):
    """Level x r accuracy, coloured; `show` replaces what it displays."""

    def show(self, grid: LevelGrid | None, trained: set[int], r_mean: int) -> None:
        if grid is None:
            self.update("")
        else:
            self.update(render_grid(grid, trained, r_mean))
