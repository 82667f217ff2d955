"""The Generate screen: stream answers from the model at an r chosen with a slider.

Type a prompt and press enter (or g) to generate; the answer streams in with each token shaded
by the iterations it used (dark = few, hot = many), then tokens/s, mean iterations and cache
size. Move the r slider (left/right when it has focus, or click it) and press g again: every
answer stays in the history side by side, so answers at different r can be compared. s cycles
sampling, e the exit criterion, l how later tokens read a token that exited early (latest: its
last cache entry; existing: only entries of the current iteration, the reference's default), v
the KV-cache budget, t continuous chain of thought, d speculative decoding, c compiled decode
steps (the first generation waits for the compile, seconds on a CPU; later ones decode faster);
escape stops a generation (and leaves the prompt box), x clears the history.

p switches to the parallel (diffusion-style) sampler; a edits its parameters (inner, headway,
freeze rule, noise, smoothing, wavefront, kv). A parallel generation draws its wavefront live
below the answers (one row per token, one column per outer step: the iterations each position
has had, the token on green at the step it froze), and the sequential answer at the same r is
generated next to it. Focus the wavefront (tab or click) and step through the outer steps with
the left and right arrows. w saves the last wavefront to the run's wavefronts/ folder (never
overwriting one); o opens the saved ones for replay, newest first, one more each press.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import HorizontalScroll
from textual.widgets import Input, Static

from recurlab.errors import UserError
from recurlab.options.generate import EXIT_CRITERIA, R_SLIDER, SPECULATIVE_LOOKAHEAD, speculative_draft
from recurlab.options.parallel import SCREEN_PARAMS
from recurlab.rundir import RunDir
from recurlab.tui.screens.modelscreen import ModelScreen
from recurlab.tui.widgets.genview import GenerationCard
from recurlab.tui.widgets.slider import Slider
from recurlab.tui.widgets.wavefront import WavefrontView

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
        # the footer's keys in order of use; the rest are listed by ? (the option line names them too)
        Binding("slash", "prompt", "Prompt", key_display="/"),
        Binding("g", "generate", "Generate"),
        Binding("e", "cycle('exit')", "Exit"),
        Binding("s", "cycle('sampling')", "Sampling"),
        Binding("p", "cycle('sampler')", "Parallel sampler", show=False),
        Binding("x", "clear", "Clear"),
        Binding("escape", "stop", "Stop (and leave the prompt)", show=False),
        Binding("v", "cycle('kv')", "KV budget", show=False),
        Binding("t", "cycle('continuous')", "Continuous", show=False),
        Binding("d", "cycle('speculative')", "Speculative", show=False),
        Binding("l", "cycle('lookup')", "Lookup of early exits", show=False),
        Binding("c", "cycle('compile')", "Compiled decode steps", show=False),
        Binding("a", "params", "Parallel sampler parameters", show=False),
        Binding("w", "save_wavefront", "Save the wavefront", show=False),
        Binding("o", "load_wavefront", "Replay saved wavefronts", show=False),
    ]

    def __init__(self):
        super().__init__()
        self.choice = {"sampling": 0, "exit": 0, "lookup": 0, "kv": 0, "continuous": 0, "speculative": 0, "sampler": 0,
                       "compile": 0}
        self.results = []  # GenerationResult of every finished generation, oldest first
        self._stop = False
        self.last_parallel = None  # (GenerationResult, tokenizer) of the newest parallel generation
        self._replay_index = -1
        self._wave_name = "live"  # what ctrl+s calls the wavefront shown: "live" or the replayed file

    def compose(self) -> ComposeResult:
        yield from self.frame(
            Input(placeholder="press / to type a prompt here, then enter to generate", id="gen-prompt"),
            Slider(*R_SLIDER[:2], value=R_SLIDER[2], label="r", id="gen-r"),
            Static("", id="gen-options"),
            Input(value=SCREEN_PARAMS, placeholder="parallel sampler parameters: key=value,...", id="gen-params"),
            HorizontalScroll(id="gen-history"),
            WavefrontView(id="gen-wave"),
        )

    def on_mount(self) -> None:
        # the prompt box says how to reach it: typed keys go to the screen's bindings until / focuses it
        self.query_one("#gen-prompt", Input).border_title = "prompt: / to type, enter to generate, escape to leave"
        self.query_one("#gen-params").display = False
        self.query_one("#gen-wave").display = False
        self._show_options()
        self.on_screen_resume()

    def show_status(self, text: str) -> None:
        self.query_one("#gen-options", Static).update(text)

    def on_model(self, lm, examples) -> None:
        self._show_options()
        prompt = self.query_one("#gen-prompt", Input)
        if examples and not prompt.value:
            prompt.value = examples[0][0]  # a held-out task prompt, so g works at once
        if not isinstance(self.focused, Input):  # a prompt being typed while the model loaded keeps its focus
            self.query_one("#gen-r", Slider).focus()

    # ---- options -------------------------------------------------------------------------------
    @property
    def parallel(self) -> bool:
        return bool(self.choice["sampler"])

    def sampler_spec(self) -> str:
        params = self.query_one("#gen-params", Input).value.strip()
        return "parallel" + (f":{params}" if params else "")

    def options(self, r: int, sequential: bool = False):
        from recurlab.engine import GenerateOptions  # torch and safetensors: loaded only when this runs

        _name, temperature, top_k, top_p = SAMPLING[self.choice["sampling"]]
        if self.parallel and not sequential:
            return GenerateOptions(r=r, max_new_tokens=MAX_NEW_TOKENS, temperature=temperature, top_k=top_k,
                                   top_p=top_p, continuous=bool(self.choice["continuous"]), sampler=self.sampler_spec())
        if self.parallel:  # the sequential answer next to a parallel one: the same r and sampling
            return GenerateOptions(r=r, max_new_tokens=MAX_NEW_TOKENS, temperature=temperature, top_k=top_k,
                                   top_p=top_p, continuous=bool(self.choice["continuous"]),
                                   compile=bool(self.choice["compile"]))
        return GenerateOptions(
            r=r, max_new_tokens=MAX_NEW_TOKENS, temperature=temperature, top_k=top_k, top_p=top_p,
            exit=EXITS[self.choice["exit"]], kv_budget=KV_BUDGETS[self.choice["kv"]],
            cache_lookup=LOOKUPS[self.choice["lookup"]],
            continuous=bool(self.choice["continuous"]),
            speculative=f"draft={speculative_draft(r)},lookahead={SPECULATIVE_LOOKAHEAD}" if self.choice["speculative"] else None,
            compile=bool(self.choice["compile"]),
        )

    def describe(self, r: int, sequential: bool = False) -> str:
        parts = [f"r={r}", SAMPLING[self.choice["sampling"]][0]]
        if self.parallel:
            return " ".join(["sequential" if sequential else "parallel", *parts])
        if EXITS[self.choice["exit"]]:
            parts.append(f"exit {EXITS[self.choice['exit']]}")
            if self.choice["lookup"]:
                parts.append(f"lookup {LOOKUPS[self.choice['lookup']]}")
        if KV_BUDGETS[self.choice["kv"]]:
            parts.append(f"kv {KV_BUDGETS[self.choice['kv']]}")
        if self.choice["continuous"]:
            parts.append("continuous")
        if self.choice["speculative"]:
            parts.append(f"spec draft={speculative_draft(r)}")
        if self.choice["compile"]:
            parts.append("compiled")
        return " ".join(parts)

    def _show_options(self) -> None:
        c = self.choice
        model = self.lm
        self.show_status(
            f"[b]s[/b] sampling: {SAMPLING[c['sampling']][0]}   [b]e[/b] exit: {EXITS[c['exit']] or 'off'}   "
            f"[b]l[/b] lookup: {LOOKUPS[c['lookup']]}   "
            f"[b]v[/b] kv: {KV_BUDGETS[c['kv']] or 'full'}   [b]t[/b] continuous: {'on' if c['continuous'] else 'off'}   "
            f"[b]d[/b] speculative: {'on' if c['speculative'] else 'off'}   "
            f"[b]p[/b] sampler: {'parallel ([b]a[/b] params)' if c['sampler'] else 'sequential'}   "
            f"[b]c[/b] compile: {'on' if c['compile'] else 'off'}"
            + (f"   model: {model.label}" if model else "")
        )
        self.query_one("#gen-params").display = bool(c["sampler"])
        if c["sampler"]:
            self.query_one("#gen-wave").display = True

    def action_cycle(self, what: str) -> None:
        sizes = {"sampling": len(SAMPLING), "exit": len(EXITS), "lookup": len(LOOKUPS), "kv": len(KV_BUDGETS),
                 "continuous": 2, "speculative": 2, "sampler": 2, "compile": 2}
        self.choice[what] = (self.choice[what] + 1) % sizes[what]
        self._show_options()

    # ---- generation ----------------------------------------------------------------------------
    def action_params(self) -> None:
        if not self.parallel:
            self.choice["sampler"] = 1
            self._show_options()
        self.query_one("#gen-params", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_generate()
        self.query_one("#gen-r", Slider).focus()

    def action_prompt(self) -> None:
        self.query_one("#gen-prompt", Input).focus()

    def action_generate(self) -> None:
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
        except UserError as exc:
            self.report(exc, "generate")
            return
        jobs = [(opts, self.describe(r))]
        if self.parallel:
            jobs.append((self.options(r, sequential=True).validate(), self.describe(r, sequential=True)))
            self.query_one("#gen-wave", WavefrontView).start(r, opts.sampler.spec(), prompt)
            self._wave_name = "live"
        history = self.query_one("#gen-history", HorizontalScroll)
        cards = list(history.query(GenerationCard))
        for old in cards[: max(len(cards) - HISTORY + len(jobs), 0)]:
            old.remove()
        planned = []
        for job_opts, header in jobs:
            card = GenerationCard(prompt, header, job_opts.max_iterations)
            history.mount(card)
            planned.append((job_opts, card))
        history.scroll_end(animate=False)
        self._stop = False
        self.generate(self.lm, prompt, planned)

    @work(thread=True, exclusive=True, group="generate")
    def generate(self, lm, prompt, planned) -> None:
        for opts, card in planned:
            if not self._generate_one(lm, prompt, opts, card):
                return

    def _generate_one(self, lm, prompt, opts, card) -> bool:
        wave = self.query_one("#gen-wave", WavefrontView)
        decode = lm.tokenizer.decode

        def on_step(ev) -> None:
            record = {"step": ev.step, "first": ev.first, "iterations": ev.iterations, "tokens": ev.tokens,
                      "texts": [decode([t]) for t in ev.tokens], "frozen": ev.frozen}
            self.app.call_from_thread(wave.add_step, record)

        try:
            stream = lm.engine.stream(prompt, opts, on_step=on_step if opts.sampler is not None else None)
            for ev in stream:
                self.app.call_from_thread(card.add_token, ev.text, ev.iterations)
                if self._stop:
                    break
            result = stream.result
        except Exception as exc:
            self.app.call_from_thread(self.report, exc, "generate")
            self.app.call_from_thread(card.fail, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return False
        if opts.sampler is not None:
            self.app.call_from_thread(wave.finish)
        if result is None:
            self.app.call_from_thread(card.fail, "stopped")
            return False
        self.results.append(result)
        if result.parallel:
            self.last_parallel = (result, lm.tokenizer)
        self.app.call_from_thread(card.finish, result)
        return True

    # ---- wavefronts ----------------------------------------------------------------------------
    def _wave_folder(self):
        from pathlib import Path

        path = self.app.model_dir()
        return path if path is not None and RunDir(path).exists() else Path(".")

    def action_save_wavefront(self) -> None:
        # torch and safetensors: loaded only when this runs
        from recurlab.engine.wavefronts import save_wavefront, wavefront_record

        if self.last_parallel is None:
            self.app.notify("no parallel generation yet: press p, then g", severity="warning")
            return
        result, tok = self.last_parallel
        try:
            path = save_wavefront(self._wave_folder(), wavefront_record(result, tok))
        except OSError as exc:
            self.report(exc, "saving the wavefront")
            return
        self._replay_index = -1
        self.app.notify(f"wavefront saved to {path}")

    def action_load_wavefront(self) -> None:
        # torch and safetensors: loaded only when this runs
        from recurlab.engine.wavefronts import list_wavefronts, load_wavefront

        paths = list_wavefronts(self._wave_folder())
        if not paths:
            self.app.notify(f"no saved wavefronts in {self._wave_folder() / 'wavefronts'}: w saves one", severity="warning")
            return
        self._replay_index = (self._replay_index + 1) % len(paths)
        path = paths[self._replay_index]
        try:
            data = load_wavefront(path)
        except (OSError, ValueError) as exc:
            self.report(exc, "loading the wavefront")
            return
        wave = self.query_one("#gen-wave", WavefrontView)
        wave.display = True
        wave.load(data, f"{path.name} ({self._replay_index + 1}/{len(paths)})")
        self._wave_name = path.stem
        wave.focus()

    def figure_specs(self) -> list:
        """ctrl+s: the wavefront shown (live or replayed) as an outer step x position heatmap."""
        from recurlab.figures import FigureError  # numpy: loaded only when this runs
        from recurlab.figures.wavefront import wavefront_figure

        wave = self.query_one("#gen-wave", WavefrontView)
        if not wave.data or not wave.data["steps"]:
            raise FigureError("no wavefront shown: press p for the parallel sampler and g, or o to replay a saved one")
        run = self.app.current_run.name if self.app.model_path is None and self.app.current_run else str(self.app.model_dir())
        return [wavefront_figure(wave.data, run=run, name=self._wave_name)]

    def action_stop(self) -> None:
        self._stop = True
        if isinstance(self.focused, Input):
            # out of the prompt box, the r slider is what one moves next
            self.query_one("#gen-r", Slider).focus()

    def action_clear(self) -> None:
        self.query_one("#gen-history").remove_children()
