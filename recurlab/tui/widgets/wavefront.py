"""The parallel sampler's wavefront as a token x outer-step grid (the paper's "tablets"), live or replayed.

    view = WavefrontView(id="gen-wave")
    view.start(r=8, sampler="parallel:inner=2,...")     # live: empty grid
    view.add_step({"step", "first", "iterations", "tokens", "texts", "frozen"})   # per outer step
    view.load(load_wavefront(path))                     # replay a saved one (recurlab.engine.wavefronts)

One row per generated token, one column per outer step. A cell is blank-dotted before the position
starts, shows the iterations the position has had while it is in the wavefront (shaded dark to hot
as they approach r), shows the token itself on green at the step it froze, and is plain green after.
Left/right (when focused) step through the outer steps; home/end jump to the first/last; the line
above the grid describes the selected step: the wavefront's span, its iterations and its draft.
"""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.reactive import reactive
from textual.widget import Widget

from recurlab.tui.widgets.genview import shade
from recurlab.tui.widgets.tokengrid import show_token

FROZEN = "on rgb(25,70,35)"
FROZE_NOW = "bold black on rgb(90,200,110)"
LABEL_W = 6


class WavefrontView(Widget, can_focus=True):
    BINDINGS = [
        Binding("left", "move(-1)", "Step back", show=False),
        Binding("right", "move(1)", "Step forward", show=False),
        Binding("home", "edge(0)", "First step", show=False),
        Binding("end", "edge(1)", "Last step", show=False),
    ]
    DEFAULT_CSS = """
    WavefrontView { height: 1fr; border: round $primary-background; }
    WavefrontView:focus { border: round $accent; }
    """

    step: reactive[int] = reactive(0)

    def __init__(self, **kw):
        super().__init__(**kw)
        self.data: dict | None = None
        self.live = False

    # ---- feeding -------------------------------------------------------------------------------
    def start(self, r: int, sampler: str, prompt: str = "") -> None:
        self.data = {"r": r, "sampler": sampler, "prompt": prompt, "steps": [], "token_texts": []}
        self.live = True
        self.border_title = "wavefront (live)"
        self.step = 0
        self.refresh()

    def add_step(self, record: dict) -> None:
        if self.data is None:
            return
        self.data["steps"].append(record)
        first, frozen = record["first"], record["frozen"]
        texts = self.data["token_texts"]
        for i in range(frozen):
            if first + i >= len(texts):
                texts.append(record["texts"][i])
        self.step = len(self.data["steps"])  # live: follow the newest step
        self.refresh()

    def finish(self) -> None:
        self.live = False
        self.border_title = "wavefront (←/→ replay)"
        self.refresh()

    def load(self, data: dict, title: str = "") -> None:
        self.data, self.live = data, False
        self.border_title = f"wavefront replay {title}".strip() + " (←/→)"
        self.step = 1 if data["steps"] else 0
        self.refresh()

    # ---- moving --------------------------------------------------------------------------------
    def watch_step(self, _s) -> None:
        self.refresh()

    def action_move(self, delta: int) -> None:
        if self.data and self.data["steps"]:
            self.step = min(max(self.step + delta, 1), len(self.data["steps"]))

    def action_edge(self, end: int) -> None:
        if self.data and self.data["steps"]:
            self.step = len(self.data["steps"]) if end else 1

    # ---- drawing -------------------------------------------------------------------------------
    def n_tokens(self) -> int:
        steps = self.data["steps"] if self.data else []
        return max([s["first"] + len(s["iterations"]) for s in steps] + [len(self.data["token_texts"]) if self.data else 0])

    def describe(self) -> str:
        d = self.data
        if not d or not d["steps"]:
            return "no wavefront yet: press p for the parallel sampler, then g"
        s = d["steps"][self.step - 1]
        span = f"tokens {s['first']}..{s['first'] + len(s['iterations']) - 1}" if s["iterations"] else "empty"
        done = "".join(d["token_texts"][: s["first"]])
        draft = "".join(s["texts"])
        return (f"outer step {self.step}/{len(d['steps'])}  wavefront {span}  iterations "
                f"{','.join(map(str, s['iterations']))}  froze {s['frozen']}  text: {done!r} + draft {draft!r}")

    def render(self) -> Text:
        d = self.data
        line = self.describe()
        width = max(self.size.width, 20)
        out = Text(line if len(line) <= width else line[: width - 1] + "…", style="bold")
        if not d or not d["steps"]:
            return out
        steps, r = d["steps"], d["r"]
        width, height = self.size.width, self.size.height
        ncols = max((width - LABEL_W) // 2, 1)
        first_col = min(max(self.step - ncols // 2, 1), max(len(steps) - ncols + 1, 1))
        cols = range(first_col, min(first_col + ncols, len(steps) + 1))
        n = self.n_tokens()
        cur = steps[self.step - 1]
        nrows = max(height - 3, 1)
        top = min(max(cur["first"] - nrows // 3, 0), max(n - nrows, 0))
        out.append("\n" + " " * LABEL_W)
        for t in cols:
            mark = str(t)[-2:].rjust(2) if t % 5 == 0 or t == 1 or t == self.step else "  "
            out.append(mark, style="reverse bold" if t == self.step else "dim")
        texts = d["token_texts"]
        for g in range(top, min(top + nrows, n)):
            committed = g < len(texts)
            i = g - cur["first"]
            # a token not committed yet is labelled with its draft at the selected step
            label = texts[g] if committed else (cur["texts"][i] if 0 <= i < len(cur["texts"]) else "·")
            out.append(f"\n{g:>2} ", style="dim")
            out.append(show_token(label or "⏹", LABEL_W - 4) + " ", style="bold green" if committed else "dim italic")
            for t in cols:
                out.append(*self._cell(steps[t - 1], g, r, t == self.step))
        out.append("\n")
        out.append("cell: iterations had (active)  token = froze then  green = frozen  · = not started", style="dim")
        return out

    @staticmethod
    def _cell(s: dict, g: int, r: int, selected: bool) -> tuple[str, str]:
        i = g - s["first"]
        if i < 0:
            return "  ", FROZEN
        if i >= len(s["iterations"]):
            return " ·", "dim"
        if i < s["frozen"]:
            return show_token(s["texts"][i] or "⏹", 2), FROZE_NOW
        its = s["iterations"][i]
        return f"{its:>2}"[-2:], shade(its, r) + (" bold underline" if selected else "")
