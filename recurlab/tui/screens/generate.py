"""The Generate screen: stream answers from the model at an r chosen with a slider.

Type a prompt and press enter (or g) to generate; the answer streams in with each token shaded
by the iterations it used (dark = few, hot = many), then tokens/s, mean iterations and cache
size. Move the r slider (left/right when it has focus, or click it) and press g again: every
answer stays in the history side by side, so answers at different r can be compared. s cycles
sampling, e the exit criterion, l how later tokens read a token that exited early (latest: its
last cache entry; existing: only entries of the current iteration, the reference's default), v
the KV-cache budget, t continuous chain of thought, d speculative decoding; escape stops a generation (and leaves the prompt box), x clears the
history.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import HorizontalScroll
from textual.widgets import Input, Static

from recurlab.tui.models import EXIT_CRITERIA
from recurlab.tui.screens.modelscreen import ModelScreen
from recurlab.tui.widgets.genview import GenerationCard
from recurlab.tui.widgets.slider import Slider

SAMPLING = (("greedy", 0.0, 0, 1.0), ("t=0.7 top-k 20", 0.7, 20, 1.0), ("t=1.0 top-p 0.9", 1.0, 0, 0.9))
EXITS = (None, *EXIT_CRITERIA)
KV_BUDGETS = (None, 1, 2, 4, 8)
LOOKUPS = ("latest", "existing")
MAX_NEW_TOKENS = 48
HISTORY = 6


class GenerateScreen(ModelScreen):
    TITLE_SHORT = "Generate"
    MODE = "generate"
    HELP = __doc__.split("\n", 1)[1]
    AUTO_FOCUS = "#gen-r"  # not a text box: digits and ? must reach the app
    R_SLIDER = "#gen-r"
    EXAMPLES_PER_LEVEL = 1
    BINDINGS = [
        Binding("g", "generate", "Generate"),
        Binding("s", "cycle('sampling')", "Sampling"),
        Binding("e", "cycle('exit')", "Exit"),
        Binding("l", "cycle('lookup')", "Lookup"),
        Binding("v", "cycle('kv')", "KV budget"),
        Binding("t", "cycle('continuous')", "Continuous"),
        Binding("d", "cycle('speculative')", "Speculative"),
        Binding("escape", "stop", "Stop", show=False),
        Binding("x", "clear", "Clear"),
        Binding("slash", "prompt", "Prompt", key_display="/"),
    ]

    def __init__(self):
        super().__init__()
        self.choice = {"sampling": 0, "exit": 0, "lookup": 0, "kv": 0, "continuous": 0, "speculative": 0}
        self.results = []  # GenerationResult of every finished generation, oldest first
        self._stop = False

    def compose(self) -> ComposeResult:
        yield from self.frame(
            Input(placeholder="prompt (enter generates)", id="gen-prompt"),
            Slider(1, 32, value=8, label="r", id="gen-r"),
            Static("", id="gen-options"),
            HorizontalScroll(id="gen-history"),
        )

    def on_mount(self) -> None:
        self._show_options()
        self.on_screen_resume()

    def show_status(self, text: str) -> None:
        self.query_one("#gen-options", Static).update(text)

    def on_model(self, lm, examples) -> None:
        self._show_options()
        prompt = self.query_one("#gen-prompt", Input)
        if examples and not prompt.value:
            prompt.value = examples[0][0]  # a held-out task prompt, so g works at once
        self.query_one("#gen-r", Slider).focus()

    # ---- options -------------------------------------------------------------------------------
    def options(self, r: int):
        from recurlab.engine import GenerateOptions

        _name, temperature, top_k, top_p = SAMPLING[self.choice["sampling"]]
        return GenerateOptions(
            r=r, max_new_tokens=MAX_NEW_TOKENS, temperature=temperature, top_k=top_k, top_p=top_p,
            exit=EXITS[self.choice["exit"]], kv_budget=KV_BUDGETS[self.choice["kv"]],
            cache_lookup=LOOKUPS[self.choice["lookup"]],
            continuous=bool(self.choice["continuous"]),
            speculative=f"draft={max(1, r // 4)},lookahead=4" if self.choice["speculative"] else None,
        )

    def describe(self, r: int) -> str:
        parts = [f"r={r}", SAMPLING[self.choice["sampling"]][0]]
        if EXITS[self.choice["exit"]]:
            parts.append(f"exit {EXITS[self.choice['exit']]}")
            if self.choice["lookup"]:
                parts.append(f"lookup {LOOKUPS[self.choice['lookup']]}")
        if KV_BUDGETS[self.choice["kv"]]:
            parts.append(f"kv {KV_BUDGETS[self.choice['kv']]}")
        if self.choice["continuous"]:
            parts.append("continuous")
        if self.choice["speculative"]:
            parts.append(f"spec draft={max(1, r // 4)}")
        return " ".join(parts)

    def _show_options(self) -> None:
        c = self.choice
        model = self.lm
        self.show_status(
            f"[b]s[/b] sampling: {SAMPLING[c['sampling']][0]}   [b]e[/b] exit: {EXITS[c['exit']] or 'off'}   "
            f"[b]l[/b] lookup: {LOOKUPS[c['lookup']]}   "
            f"[b]v[/b] kv: {KV_BUDGETS[c['kv']] or 'full'}   [b]t[/b] continuous: {'on' if c['continuous'] else 'off'}   "
            f"[b]d[/b] speculative: {'on' if c['speculative'] else 'off'}"
            + (f"   model: {model.label}" if model else "")
        )

    def action_cycle(self, what: str) -> None:
        sizes = {"sampling": len(SAMPLING), "exit": len(EXITS), "lookup": len(LOOKUPS), "kv": len(KV_BUDGETS),
                 "continuous": 2, "speculative": 2}
        self.choice[what] = (self.choice[what] + 1) % sizes[what]
        self._show_options()

    # ---- generation ----------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_generate()
        self.query_one("#gen-r", Slider).focus()

    def action_prompt(self) -> None:
        self.query_one("#gen-prompt", Input).focus()

    def action_generate(self) -> None:
        from recurlab.errors import USER_ERRORS

        if self.lm is None:
            self.app.notify("the model is not loaded yet", severity="warning")
            return
        prompt = self.query_one("#gen-prompt", Input).value
        if not prompt:
            self.app.notify("type a prompt first (/ focuses the prompt box)", severity="warning")
            return
        r = self.query_one("#gen-r", Slider).value
        try:
            opts = self.options(r).validate()
        except USER_ERRORS as exc:
            self.report(exc, "generate")
            return
        history = self.query_one("#gen-history", HorizontalScroll)
        cards = list(history.query(GenerationCard))
        for old in cards[: max(len(cards) - HISTORY + 1, 0)]:
            old.remove()
        card = GenerationCard(prompt, self.describe(r), opts.max_iterations)
        history.mount(card)
        history.scroll_end(animate=False)
        self._stop = False
        self.generate(self.lm, prompt, opts, card)

    @work(thread=True, exclusive=True, group="generate")
    def generate(self, lm, prompt, opts, card) -> None:
        try:
            stream = lm.engine.stream(prompt, opts)
            for ev in stream:
                self.app.call_from_thread(card.add_token, ev.text, ev.iterations)
                if self._stop:
                    break
            result = stream.result
        except Exception as exc:
            self.app.call_from_thread(self.report, exc, "generate")
            self.app.call_from_thread(card.fail, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return
        if result is None:
            self.app.call_from_thread(card.fail, "stopped")
            return
        self.results.append(result)
        self.app.call_from_thread(card.finish, result)

    def action_stop(self) -> None:
        self._stop = True
        if isinstance(self.focused, Input):
            # out of the prompt box, the r slider is what one moves next
            self.query_one("#gen-r", Slider).focus()

    def action_clear(self) -> None:
        self.query_one("#gen-history").remove_children()
