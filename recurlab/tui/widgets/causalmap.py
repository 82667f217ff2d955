"""The Inspector's causal-trace view: one row per token, one column per iteration, each cell the
share of the clean answer's log-probability that restoring that one state recovers.

    view = CausalMap(id="insp-causal"); view.show(record)    # an engine causal_trace record

Cells run from dark (0%: this state carries nothing of the answer) to bright green (100%: it
carries all of it); the digit is the recovery in tenths (9 = 90% or more), '-' an unmeasured cell.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from recurlab.tui.widgets.tokengrid import show_token

LOW, HIGH = (25, 25, 45), (40, 190, 80)


def cell_style(v: float | None) -> str:
    if v is None:
        return "on grey23"
    t = min(max(v, 0.0), 1.0)
    r, g, b = (round(lo + (hi - lo) * t) for lo, hi in zip(LOW, HIGH))
    return f"bold white on rgb({r},{g},{b})"


def render_causal(rec: dict) -> Text:
    r = rec["r"]
    out = Text()
    answer = "".join(rec["answer"]["text"])
    out.append(f"causal trace: {rec['prompt']!r} vs corrupted {rec['corrupt_prompt']!r}, answer {answer!r}\n", style="bold")
    out.append(f"log p(answer): clean {rec['logp_clean']:.3f}, corrupted {rec['logp_corrupt']:.3f}; "
               "cell: recovery after restoring one state (tenths)\n", style="dim")
    out.append(" " * 7)
    for i in range(1, r + 1):
        out.append(f"{i:>2}" if i % 4 == 0 or i == 1 else "  ", style="dim")
    for t, (tok, row) in enumerate(zip(rec["tokens"], rec["recovery"])):
        out.append("\n")
        out.append(f"{t:>2} ", style="dim")
        out.append(show_token(tok, 3) + " ", style="bold green" if t >= rec["n_prompt"] else "bold")
        for v in row:
            digit = "-" if v is None else str(min(max(int(v * 10), 0), 9))
            out.append(f" {digit}", style=cell_style(v))
    carriers = [c for c in rec.get("carriers", []) if c["from_iteration"] is not None]
    out.append("\n")
    if carriers:
        out.append("≥ 50% from: " + ", ".join(f"{c['token']} {c['text']!r} @ {c['from_iteration']}" for c in carriers[:6]),
                   style="green")
    else:
        out.append("no single state recovers half of the answer", style="dim")
    return out


class CausalMap(Static):
    def show(self, rec: dict | None) -> None:
        self.update(render_causal(rec) if rec else "")
