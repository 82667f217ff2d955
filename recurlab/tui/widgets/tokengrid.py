"""The inspector's token x iteration grid: one row per token, one column per iteration.

    grid = TokenGrid(id="grid"); grid.trace = trace_dict; grid.metric = "kl_final"
    def on_token_grid_moved(self, event): event.token, event.iteration   # 0-based, 1-based

Each cell shows the coda's most likely next token at that iteration on a background colored by
convergence (log scale: dark blue = converged, red = still changing), so fixed points, late
flips and orbits are visible at a glance. The selected cell is reversed; a token's exit
iteration under the chosen criterion is underlined. Arrow keys move the selection; rows and
columns scroll to keep it visible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

# log10 ranges that span "converged" to "changing a lot" for each coloring
RANGES = {"rel_change": (-4.0, 0.0), "kl_final": (-5.0, 1.0)}
METRIC_NAMES = {"rel_change": "relative change", "kl_final": "KL to final"}
COLD, HOT = (20, 40, 110), (235, 70, 40)
LABEL_W = 7  # "12 tok " : position, token text, gap


def heat(value: float | None, metric: str) -> str:
    """A background color for a convergence value."""
    if value is None or not math.isfinite(value):
        return "on grey23"
    lo, hi = RANGES[metric]
    t = (math.log10(max(value, 1e-12)) - lo) / (hi - lo)
    t = min(max(t, 0.0), 1.0)
    r, g, b = (round(c + (h - c) * t) for c, h in zip(COLD, HOT))
    return f"on rgb({r},{g},{b})"


def show_token(text: str, width: int) -> str:
    """A token in exactly `width` cells: whitespace made visible, <special> tokens as ‹s."""
    text = text.replace("\n", "⏎").replace(" ", "␣").replace("\t", "⇥") or "∅"
    if len(text) > width and text.startswith("<") and text.endswith(">"):
        text = "‹" + text[1:-1]
    return text[:width].ljust(width)


class TokenGrid(Widget, can_focus=True):
    BINDINGS = [
        Binding("up", "move(-1, 0)", "Token up", show=False),
        Binding("down", "move(1, 0)", "Token down", show=False),
        Binding("left", "move(0, -1)", "Iteration back", show=False),
        Binding("right", "move(0, 1)", "Iteration forward", show=False),
        Binding("home", "edge(0)", "First iteration", show=False),
        Binding("end", "edge(1)", "Last iteration", show=False),
    ]
    DEFAULT_CSS = """
    TokenGrid { height: 1fr; }
    TokenGrid:focus { border: round $accent; }
    TokenGrid { border: round $primary-background; }
    """

    token: reactive[int] = reactive(0)
    iteration: reactive[int] = reactive(1)
    metric: reactive[str] = reactive("rel_change")
    trace: reactive[dict | None] = reactive(None, always_update=True)

    @dataclass
    class Moved(Message):
        grid: "TokenGrid"
        token: int
        iteration: int

    def watch_trace(self, trace) -> None:
        self.refresh(layout=True)  # the width follows r
        if trace:
            self.token = min(self.token, len(trace["tokens"]) - 1)
            self.iteration = min(max(self.iteration, 1), trace["r"])
        self._moved()

    def watch_metric(self, _m) -> None:
        self.refresh()

    def _moved(self) -> None:
        self.refresh()
        self.post_message(self.Moved(self, self.token, self.iteration))

    def action_move(self, dt: int, di: int) -> None:
        if not self.trace:
            return
        self.token = min(max(self.token + dt, 0), len(self.trace["tokens"]) - 1)
        self.iteration = min(max(self.iteration + di, 1), self.trace["r"])
        self._moved()

    def action_edge(self, end: int) -> None:
        if self.trace:
            self.iteration = self.trace["r"] if end else 1
            self._moved()

    def select(self, token: int, iteration: int) -> None:
        self.token, self.iteration = token, iteration
        self._moved()

    def _window(self, n: int, cur: int, size: int) -> range:
        """`size` consecutive indices of `n` that contain `cur`, as centred as possible."""
        size = max(min(size, n), 1)
        start = min(max(cur - size // 2, 0), n - size)
        return range(start, start + size)

    def get_content_width(self, container, viewport) -> int:
        """As wide as two cells per iteration need (CSS max-width caps it; cells shrink to one)."""
        if not self.trace:
            return 40
        return LABEL_W + 2 * self.trace["r"]

    def render(self) -> Text:
        trace = self.trace
        if not trace:
            return Text("no trace yet: type a prompt and press enter, or pick a held-out example", style="italic")
        r, tokens = trace["r"], trace["tokens"]
        width, height = self.size.width, self.size.height
        cell = 2 if LABEL_W + 2 * r <= width else 1
        cols = self._window(r, self.iteration - 1, (width - LABEL_W) // cell)
        rows = self._window(len(tokens), self.token, height - 1)
        out = Text(" " * LABEL_W)
        for i in cols:
            num = str(i + 1)
            mark = num[-cell:].rjust(cell) if (i + 1) % 4 == 0 or i == 0 or i + 1 == self.iteration else " " * cell
            out.append(mark, style="bold" if i + 1 == self.iteration else "dim")
        for t in rows:
            tok = tokens[t]
            gen = t >= trace.get("n_prompt", len(tokens))
            out.append("\n")
            out.append(f"{t:>2} ", style="dim")
            out.append(show_token(tok["text"], LABEL_W - 4) + " ", style="bold green" if gen else "bold")
            values = tok[self.metric]
            for i in cols:
                top = tok["top"][i][0]["text"] if tok["top"][i] else ""
                style = heat(values[i], self.metric)
                if t == self.token and i + 1 == self.iteration:
                    style = "reverse bold"
                elif tok.get("exit_iteration") == i + 1:
                    style += " underline bold"
                out.append(show_token(top, cell), style=style)
        return out

    def on_click(self, event) -> None:
        if not self.trace:
            return
        r, n = self.trace["r"], len(self.trace["tokens"])
        cell = 2 if LABEL_W + 2 * r <= self.size.width else 1
        cols = self._window(r, self.iteration - 1, (self.size.width - LABEL_W) // cell)
        rows = self._window(n, self.token, self.size.height - 1)
        offset = event.get_content_offset(self)
        if offset is None:
            return
        x, y = offset.x - LABEL_W, offset.y - 1
        if x >= 0 and 0 <= y < len(rows) and x // cell < len(cols):
            self.select(rows[y], cols[x // cell] + 1)
