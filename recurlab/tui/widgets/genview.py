"""One generation in the Generate screen's history: header, streamed tokens shaded by the
iterations each used, then the speed summary.

    card = GenerationCard("12+34=", "r=8 greedy", r_max=8)
    card.add_token(text, iterations)      # as the engine streams them
    card.finish(result)                   # a recurlab.engine.GenerationResult
    card.finish(result, row=2)            # the third prompt of a generation over several
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

LOW, HIGH = (40, 40, 70), (200, 90, 30)


def shade(iterations: int, r_max: int) -> str:
    """Darker for few iterations, hotter for many."""
    t = min(max((iterations - 1) / max(r_max - 1, 1), 0.0), 1.0)
    r, g, b = (round(lo + (hi - lo) * t) for lo, hi in zip(LOW, HIGH))
    return f"on rgb({r},{g},{b})"


class GenerationCard(Static):
    def __init__(self, prompt: str, header: str, r_max: int):
        super().__init__(classes="gen-card")
        self.prompt, self.header, self.r_max = prompt, header, r_max
        self.pieces: list[tuple[str, int]] = []
        self.summary = "generating ..."
        self.result = None

    def on_mount(self) -> None:
        self.border_title = self.header
        self._redraw()

    @property
    def text(self) -> str:
        return "".join(p for p, _ in self.pieces)

    def add_token(self, text: str, iterations: int) -> None:
        self.pieces.append((text, iterations))
        self._redraw()

    def finish(self, result, row: int = 0) -> None:
        """Tokens and iterations are the row's; tokens/s, cache and batching are the whole call's."""
        self.result = result
        its = result.iterations[row]
        several = len(result.prompts) > 1
        speed = f"{result.tokens_per_s:,.1f} tok/s" + (f" over {len(result.prompts)} prompts" if several else "")
        parts = [f"{len(result.generated_ids[row])} tokens", speed, f"mean it {sum(its) / max(len(its), 1):.2f}"]
        if result.compile_seconds:
            parts.insert(2, f"incl. {result.compile_seconds:.1f} s compiling")
        if result.acceptance_rate is not None:
            parts.append(f"accept {100 * result.acceptance_rate:.0f}%")
        parts.append(f"kv {result.cache_bytes / 1024:,.0f} KiB")
        if result.depth:
            parts.append(f"depth batch {result.depth['rows']} rows, {result.depth['rows_per_pass']:.1f} tokens/pass")
        par = getattr(result, "parallel", None)
        if par:
            parts.append(f"{par['outer_steps']} outer steps  {par['passes_per_token']:.2f} passes/token "
                         f"({par['speedup_in_passes']:.1f}x fewer)")
        self.summary = "  ".join(parts)
        self._redraw()

    def fail(self, message: str) -> None:
        self.summary = f"failed: {message}"
        self._redraw()

    def _redraw(self) -> None:
        out = Text(self.prompt, style="dim")
        for piece, its in self.pieces:
            out.append(piece.replace("\n", "⏎\n"), style=shade(its, self.r_max))
        out.append("\n\n")
        out.append(self.summary, style="bold")
        self.update(out)
