"""The Inspector screen: how each token's latent state converges over the core's iterations.

Type a prompt and press enter, or pick a held-out task example (x, or n for the next one); the
trace runs the prompt plus a short greedy answer at the chosen r in a background worker. The
grid has one row per token and one column per iteration; each cell shows the top predicted
token on a color for convergence (k switches relative change / KL to final). Arrow keys move
the selected cell (left/right step one iteration back/forward, p plays the iterations); the side
panel shows that cell's top tokens with probabilities, entropy, KL and where the token exits
under the chosen criterion (c cycles criteria). The plot shows the PCA trajectory of the
selected token's states; o overlays the trajectories from several random starts.

Inside the loop: l cycles the lens (coda, logit, tuned); s types a source prompt; a patches the
selected token at the selected iteration from it, z switches the input injection off from that
iteration, g adds noise there, u undoes; t shows the causal trace against the source prompt
(ctrl+s saves its heatmap). The grid's last column is each token's verdict (S settling, O
orbiting, D drifting) and the spectral radius of its core step at the final state.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Select, Static
from textual_plotext import PlotextPlot

from recurlab.options.generate import EXIT_CRITERIA, GATE_CRITERION, R_SLIDER
from recurlab.tui.screens.inspector_lab import InsideLoop
from recurlab.tui.screens.modelscreen import ModelScreen
from recurlab.tui.widgets.causalmap import CausalMap
from recurlab.tui.widgets.slider import Slider
from recurlab.tui.widgets.tokengrid import METRIC_NAMES, TokenGrid

STARTS = 4
ANSWER_TOKENS = 12
PLAY_S = 0.35


class InspectorScreen(InsideLoop, ModelScreen):
    TITLE_SHORT = "Inspector"
    MODE = "inspect"
    HELP = __doc__.split("\n", 1)[1]
    AUTO_FOCUS = "#insp-grid"  # not a text box: digits and ? must reach the app
    R_SLIDER = "#insp-r"
    EXAMPLES_PER_LEVEL = 6
    BINDINGS = [
        # the footer's keys in order of use; the rest are listed by ?
        Binding("slash", "prompt", "Prompt", key_display="/"),
        Binding("n", "next_example", "Next"),
        Binding("p", "play", "Play", show=False),
        Binding("k", "color", "Color by", show=False),
        Binding("x", "examples", "Examples", show=False),
        Binding("c", "criterion", "Exit rule", show=False),
        Binding("o", "overlay", "Random starts", show=False),
        Binding("ctrl+t", "trace", "Trace", show=False),
        Binding("comma", "iteration(-1)", "Iteration back", key_display=",", show=False),
        Binding("full_stop", "iteration(1)", "Iteration forward", key_display=".", show=False),
        Binding("l", "lens", "Lens"),
        Binding("s", "source", "Source prompt", show=False),
        Binding("a", "patch", "Patch"),
        Binding("z", "inject_off", "Injection off", show=False),
        Binding("g", "noise", "Noise", show=False),
        Binding("u", "undo", "Undo", show=False),
        Binding("t", "causal", "Causal"),
    ]

    def __init__(self):
        super().__init__()
        self.criterion = 0
        self.criteria = EXIT_CRITERIA  # plus gate:0.9 once a model with an exit gate (Ouro) is loaded
        self.starts = 0
        self.examples: list[tuple[str, str]] = []
        self.example = -1
        self.trace: dict | None = None
        self._player = None
        self.init_inside()

    def compose(self) -> ComposeResult:
        yield from self.frame(
            Horizontal(
                Input(placeholder="prompt, e.g. 12+34= (enter traces it)", id="insp-prompt"),
                Select([], id="insp-examples", prompt="held-out examples", allow_blank=True),
                Input(placeholder="source prompt (s): patch, causal trace", id="insp-source"),
                id="insp-controls",
            ),
            Slider(*R_SLIDER[:2], value=R_SLIDER[2], label="r", id="insp-r"),
            Horizontal(
                TokenGrid(id="insp-grid"),
                CausalMap(id="insp-causal"),
                Vertical(Static("", id="insp-detail"), PlotextPlot(id="insp-pca"), id="insp-side"),
                id="insp-body",
            ),
        )

    def on_mount(self) -> None:
        self.query_one(CausalMap).display = False
        self.on_screen_resume()

    def on_screen_suspend(self) -> None:
        self._stop_play()

    # ---- loading -------------------------------------------------------------------------------
    def show_status(self, text: str) -> None:
        self._detail(text)

    def on_model(self, lm, examples) -> None:
        if lm.cfg.model.exit_gate:  # the model's own exit rule comes first
            self.criteria, self.criterion = (GATE_CRITERION, *EXIT_CRITERIA), 0
        else:
            self.criteria, self.criterion = EXIT_CRITERIA, min(self.criterion, len(EXIT_CRITERIA) - 1)
        self.examples = examples
        sel = self.query_one("#insp-examples", Select)
        sel.set_options([(f"{p} → {a}", i) for i, (p, a) in enumerate(examples)])
        self._detail(f"{lm.label} on {lm.device}: type a prompt or press x / n for a held-out example")
        prompt = self.query_one("#insp-prompt", Input)
        if examples:
            prompt.placeholder = f"prompt, e.g. {examples[-1][0]} (enter traces it)"
        if self.trace is not None or prompt.value:
            self.action_trace()  # a newer checkpoint, or a prompt typed while the model loaded
        elif examples:
            self.action_next_example()

    # ---- tracing -------------------------------------------------------------------------------
    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "insp-source":  # enter in the source box: patch the selected cell
            self.query_one(TokenGrid).focus()
            self.action_patch()
            return
        self.action_trace()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "insp-examples" and isinstance(event.value, int):
            self.example = int(event.value)
            self.query_one("#insp-prompt", Input).value = self.examples[self.example][0]
            self.action_trace()

    def action_examples(self) -> None:
        sel = self.query_one("#insp-examples", Select)
        sel.focus()
        sel.expanded = True

    def action_next_example(self) -> None:
        if not self.examples:
            self.app.notify("no held-out examples: this model was not trained on an embedded task", severity="warning")
            return
        self.query_one("#insp-examples", Select).value = (self.example + 1) % len(self.examples)

    def action_prompt(self) -> None:
        self.query_one("#insp-prompt", Input).focus()

    def action_trace(self) -> None:
        if self.lm is None:
            self.app.notify("the model is not loaded yet", severity="warning")
            return
        prompt = self.query_one("#insp-prompt", Input).value
        if not prompt:
            self.app.notify("type a prompt first (/ focuses the prompt box)", severity="warning")
            return
        r = self.query_one("#insp-r", Slider).value
        self._detail(f"tracing {prompt!r} at r = {r} ...")
        self.run_trace(self.lm, prompt, r, self.criteria[self.criterion], self.starts)

    @work(thread=True, exclusive=True, group="inspect-trace")
    def run_trace(self, lm, prompt: str, r: int, criterion: str, starts: int) -> None:
        from recurlab.engine import GenerateOptions, latent_trace  # torch and safetensors: loaded only when this runs

        try:
            trace = latent_trace(lm.model, lm.tokenizer, prompt, r=r, criterion=criterion, starts=starts,
                                 generate=GenerateOptions(r=r, max_new_tokens=ANSWER_TOKENS), lens=self.lens_object(lm))
        except Exception as exc:
            self.app.call_from_thread(self.report, exc, "trace")
            return
        self.app.call_from_thread(self._show_trace, trace)

    def _show_trace(self, trace: dict, keep_clean: bool = False) -> None:
        first = self.trace is None or self.trace.get("prompt") != trace["prompt"]
        if not keep_clean:  # a fresh trace of the unchanged run
            self.clean_trace, self.intervention = trace, None
            if self.lm is not None and self.lm.model.cfg.is_recurrent:
                self.run_radius(self.lm, trace)
            if self.view != "grid":
                self._set_view("grid")
        self.trace = trace
        grid = self.query_one(TokenGrid)
        grid.trace = trace
        if first:  # start on the first answer token, at the last iteration
            grid.select(min(trace["n_prompt"], len(trace["tokens"]) - 1), trace["r"])
        # the panel follows at once, not only when the grid's Moved message arrives (a worker
        # computing radii may keep the message queue waiting)
        self._describe(grid.token, grid.iteration)
        grid.focus()

    # ---- the selected cell ---------------------------------------------------------------------
    def on_token_grid_moved(self, event: TokenGrid.Moved) -> None:
        if self.trace:
            self._describe(event.token, event.iteration)
            self._draw_pca(event.token, event.iteration)

    def _describe(self, t: int, it: int) -> None:
        trace = self.trace
        tok = trace["tokens"][t]
        i = it - 1
        where = "answer" if t >= trace["n_prompt"] else "prompt"
        kl_prev = tok["kl_prev"][i]
        exit_it = tok.get("exit_iteration")
        lines = [
            f"[b]token {t}[/b] {tok['text']!r} ({where})  [b]iteration {it}/{trace['r']}[/b]",
            f"rel change {tok['rel_change'][i]:.3g}   to final {tok['dist_final'][i]:.3g}",
            f"entropy {tok['entropy'][i]:.3f} nats",
            f"KL prev {'-' if kl_prev is None else f'{kl_prev:.3g}'}   KL final {tok['kl_final'][i]:.3g}",
            f"exit ({trace['criterion']}): " + ("-" if exit_it is None else f"iteration {exit_it}"),
            "top next tokens:",
        ]
        for cand in tok["top"][i]:
            bar = "█" * max(1, round(cand["p"] * 16))
            lines.append(f"  {cand['text']!r:>6} {cand['p']:6.3f} [cyan]{bar}[/cyan]")
        pdf = tok.get("exit_pdf")
        if pdf:
            lines.append("exit gate: P(exit at iteration k)")
            for k, p in enumerate(pdf):
                mark = "▶" if k == i else " "
                lines.append(f" {mark}{k + 1:>3} {p:6.3f} [magenta]{'█' * max(1 if p > 0.005 else 0, round(p * 16))}[/magenta]")
        pi = trace.get("path_independence")
        if pi:
            lines.append(f"{pi['starts']} starts: spread {pi['distance'][t][i]:.3g} (at start {pi['distance_at_start'][t]:.3g})")
        lines += self.dynamics_lines(t)
        lines.append(f"grid color: {METRIC_NAMES[self.query_one(TokenGrid).metric]}")
        self._detail("\n".join(lines))

    def _draw_pca(self, t: int, it: int) -> None:
        plot = self.query_one("#insp-pca", PlotextPlot)
        plt = plot.plt
        plt.clear_figure()
        pi = self.trace.get("path_independence")
        if pi:
            for k, start in enumerate(pi["pca"]):
                xs, ys = zip(*start[t])
                plt.plot(list(xs), list(ys), marker="dot", color=("gray", "magenta", "blue", "green", "orange")[k % 5])
        pts = self.trace["tokens"][t]["pca"]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        plt.plot(xs, ys, marker="hd", color="cyan", label="s_i")
        plt.scatter([xs[it - 1]], [ys[it - 1]], marker="●", color="yellow", label=f"i={it}")
        plt.title(f"PCA of token {t}" + (f" + {pi['starts']} starts" if pi else ""))
        plot.refresh()

    def figure_specs(self) -> list:
        """ctrl+s: the grid as a heatmap (the chosen colouring) and the selected token's PCA plot."""
        from recurlab.figures import FigureError, heatmap_figure, pca_figure  # numpy: loaded only when this runs

        if not self.trace:
            raise FigureError("no trace shown yet: type a prompt and press enter, or x for examples")
        grid = self.query_one(TokenGrid)
        run = self.app.current_run.name if self.app.current_run is not None else str(self.app.model_dir())
        if self.view == "causal" and self.causal is not None:
            return self.causal_figure_specs(run)
        value = grid.metric.replace("_", "-")
        return [heatmap_figure(self.trace, value, run=run, trace_name="inspector"),
                pca_figure(self.trace, grid.token, run=run, trace_name="inspector")]

    def _detail(self, text: str) -> None:
        self.query_one("#insp-detail", Static).update(text)

    # ---- keys ----------------------------------------------------------------------------------
    def action_color(self) -> None:
        grid = self.query_one(TokenGrid)
        grid.metric = "kl_final" if grid.metric == "rel_change" else "rel_change"
        if self.trace:
            self._describe(grid.token, grid.iteration)

    def action_criterion(self) -> None:
        self.criterion = (self.criterion + 1) % len(self.criteria)
        self.app.notify(f"exit criterion: {self.criteria[self.criterion]}")
        if self.trace:
            self.action_trace()

    def action_overlay(self) -> None:
        self.starts = 0 if self.starts else STARTS
        self.app.notify(f"random starts: {self.starts or 'off'}")
        if self.trace:
            self.action_trace()

    def action_iteration(self, delta: int) -> None:
        self.query_one(TokenGrid).action_move(0, delta)

    def action_play(self) -> None:
        if self._player is not None:
            self._stop_play()
            return
        if not self.trace:
            return
        grid = self.query_one(TokenGrid)
        if grid.iteration >= self.trace["r"]:
            grid.select(grid.token, 1)
        self._player = self.set_interval(PLAY_S, self._tick)

    def _tick(self) -> None:
        grid = self.query_one(TokenGrid)
        if not self.trace or grid.iteration >= self.trace["r"]:
            self._stop_play()
            return
        grid.action_move(0, 1)

    def _stop_play(self) -> None:
        if self._player is not None:
            self._player.stop()
            self._player = None
