"""The Inspector's causal keys: lenses, interventions at the selected cell, the causal trace,
and each token's dynamics (a mixin of InspectorScreen; everything runs through the engine).

    l  cycle the lens the grid reads the states with: coda, logit, tuned (`recurlab lens train`)
    s  type the source prompt (for patching, the causal trace and the injected input)
    a  patch the selected token at the selected iteration from the source prompt; the grid shows
       the patched run and the panel the change in log p(answer)
    z  inject zeros (or the source prompt's embedding) from the selected iteration on
    g  Gaussian noise of relative size 0.5 at the selected iteration, and when each token recovers
    u  back to the unchanged run
    t  the causal trace of the prompt against the source prompt (t again: back to the grid);
       ctrl+s then saves its heatmap

Each intervention is also written to the run's interventions/ folder (./interventions/ for a
model folder). The radius of each token's core step (spectral radius of its Jacobian at the
final state) is computed after the grid appears and fills the grid's last column.
"""

from __future__ import annotations

from textual import work
from textual.widgets import Input

from recurlab.tui.widgets.causalmap import CausalMap
from recurlab.tui.widgets.tokengrid import TokenGrid

LENSES = ("coda", "logit", "tuned")
NOISE = 0.5


class InsideLoop:
    """State and actions; the screen provides `lm`, `trace`, `_detail`, `report`, the grid and the inputs."""

    def init_inside(self) -> None:
        self.lens_name = "coda"
        self.tuned = {}  # model key -> TunedLens or None (looked up once per model)
        self.clean_trace: dict | None = None  # the unchanged run's trace; self.trace is what the grid shows
        self.intervention: dict | None = None  # the record behind the shown trace, if any
        self.causal: dict | None = None
        self.view = "grid"

    # ---- what workers need (called in worker threads) -------------------------------------------
    def lens_object(self, lm):
        from recurlab.engine.lens import get_lens  # torch: the engine is loaded in the worker, not with the screen

        if self.lens_name != "tuned":
            return get_lens(self.lens_name)
        key = id(lm)
        if key not in self.tuned:
            from recurlab.engine.lens_train import load_tuned_lens  # torch, as above

            self.tuned[key] = load_tuned_lens(lm)
        return get_lens("tuned", self.tuned[key])

    def _sequence(self, trace: dict):
        from recurlab.engine.interventions import Sequence  # torch: the engine is loaded in the worker, not with the screen

        return Sequence(trace["prompt"], [t["id"] for t in trace["tokens"]], trace["n_prompt"])

    # ---- keys -----------------------------------------------------------------------------------
    def action_lens(self) -> None:
        self.lens_name = LENSES[(LENSES.index(self.lens_name) + 1) % len(LENSES)]
        self.app.notify(f"lens: {self.lens_name}")
        if self.clean_trace is not None:
            self.action_trace()

    def action_source(self) -> None:
        self.query_one("#insp-source", Input).focus()

    def _source_prompt(self) -> str | None:
        text = self.query_one("#insp-source", Input).value
        return text or None

    def _ready(self) -> bool:
        if self.lm is None or self.clean_trace is None:
            self.app.notify("trace a prompt first", severity="warning")
            return False
        return True

    def _cell(self) -> tuple[int, int]:
        grid = self.query_one(TokenGrid)
        return grid.token, grid.iteration

    def action_patch(self) -> None:
        if not self._ready():
            return
        src = self._source_prompt()
        if src is None:
            self.app.notify("type a source prompt first (s focuses it)", severity="warning")
            return
        token, iteration = self._cell()
        self._detail(f"patching token {token} at iteration {iteration} from {src!r} ...")
        self.run_intervention(self.lm, "patch", self.clean_trace, src, token, iteration)

    def action_inject_off(self) -> None:
        if not self._ready():
            return
        _, iteration = self._cell()
        self.run_intervention(self.lm, "inject", self.clean_trace, self._source_prompt(), None, iteration)

    def action_noise(self) -> None:
        if not self._ready():
            return
        _, iteration = self._cell()
        self.run_intervention(self.lm, "noise", self.clean_trace, None, None, iteration)

    def action_undo(self) -> None:
        if self.clean_trace is not None and self.intervention is not None:
            self.intervention = None
            self._show_trace(self.clean_trace, keep_clean=True)

    def action_causal(self) -> None:
        if self.view == "causal":
            self._set_view("grid")
            return
        if not self._ready():
            return
        src = self._source_prompt()
        if src is None:
            self.app.notify("type a corrupted source prompt first (s focuses it), as long as the prompt", severity="warning")
            return
        trace = self.clean_trace
        if self.causal and self.causal["prompt"] == trace["prompt"] and self.causal["corrupt_prompt"] == src \
                and self.causal["r"] == trace["r"] and self.causal["tokens"] == [t["text"] for t in trace["tokens"]]:
            self._set_view("causal")
            return
        self._detail(f"causal trace of {trace['prompt']!r} against {src!r}: {len(trace['tokens'])} tokens x {trace['r']} iterations ...")
        self.run_causal(self.lm, trace, src)

    def _set_view(self, view: str) -> None:
        self.view = view
        self.query_one(TokenGrid).display = view == "grid"
        cm = self.query_one(CausalMap)
        cm.display = view == "causal"
        if view == "causal":
            cm.show(self.causal)
        else:
            self.query_one(TokenGrid).focus()

    # ---- workers --------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="inspect-intervene")
    def run_intervention(self, lm, kind: str, trace: dict, source: str | None, token: int | None, iteration: int) -> None:
        # torch: the engine is loaded in the worker, not with the screen
        from recurlab.engine.interventions import add_noise, inject_off, patch, save_intervention, with_prompt
        from recurlab.engine.records import record_root

        try:
            seq = self._sequence(trace)
            lens = self.lens_object(lm)
            r = trace["r"]
            if kind == "patch":
                rec = patch(lm.model, lm.tokenizer, seq, with_prompt(lm.engine, source, seq), token, iteration, r, lens=lens)
            elif kind == "inject":
                src = with_prompt(lm.engine, source, seq) if source else None
                rec = inject_off(lm.model, lm.tokenizer, seq, iteration, r, source=src, lens=lens)
            else:
                rec = add_noise(lm.model, lm.tokenizer, seq, NOISE, iteration, r, lens=lens)
            rec["source"] = lm.source
            save_intervention(record_root(lm), rec)
        except Exception as exc:
            self.app.call_from_thread(self.report, exc, kind)
            return
        self.app.call_from_thread(self._show_intervention, rec)

    def _show_intervention(self, rec: dict) -> None:
        self.intervention = rec
        self._show_trace(rec["trace"], keep_clean=True)

    @work(thread=True, exclusive=True, group="inspect-causal")
    def run_causal(self, lm, trace: dict, source: str) -> None:
        # torch: the engine is loaded in the worker, not with the screen
        from recurlab.engine.interventions import causal_trace, save_intervention, with_prompt
        from recurlab.engine.records import record_root

        try:
            seq = self._sequence(trace)
            rec = causal_trace(lm.model, lm.tokenizer, seq, with_prompt(lm.engine, source, seq), trace["r"])
            rec["source"] = lm.source
            save_intervention(record_root(lm), rec)
        except Exception as exc:
            self.app.call_from_thread(self.report, exc, "causal trace")
            return
        self.app.call_from_thread(self._show_causal, rec)

    def _show_causal(self, rec: dict) -> None:
        self.causal = rec
        self._set_view("causal")
        self._detail("causal trace: t returns to the grid; ctrl+s saves the heatmap")

    @work(thread=True, exclusive=True, group="inspect-radius")
    def run_radius(self, lm, trace: dict) -> None:
        from recurlab.engine.stability import sequence_dynamics  # torch: the engine is loaded in the worker, not with the screen

        try:
            _, radii = sequence_dynamics(lm.model, [t["id"] for t in trace["tokens"]], trace["r"],
                                         init_scale=trace.get("init_scale"), seed=trace.get("seed", 0))
        except Exception as exc:
            self.app.call_from_thread(self.report, exc, "radius")
            return
        self.app.call_from_thread(self._show_radius, trace, radii)

    def _show_radius(self, trace: dict, radii: list[float]) -> None:
        for tok, rho in zip(trace["tokens"], radii):
            tok["radius"] = float(f"{rho:.6g}")
        if self.trace is trace:
            grid = self.query_one(TokenGrid)
            grid.trace = trace  # redraws the column and the panel
            # the grid keeps its selection; the panel follows through the Moved message

    # ---- the panel ------------------------------------------------------------------------------
    def dynamics_lines(self, t: int) -> list[str]:
        tok = self.trace["tokens"][t]
        v = tok.get("verdict") or {}
        kind = v.get("kind", "-")
        detail = f" from iteration {v['at']}" if v.get("at") else (f", period {v['period']}" if v.get("period") else "")
        rho = tok.get("radius")
        rad = "computing ..." if rho is None and self.intervention is None else ("-" if rho is None else f"{rho:.3g}")
        lines = [f"dynamics: [b]{kind}[/b]{detail}   radius ρ {rad}   lens {self.trace.get('lens', 'coda')}"]
        rec = self.intervention
        if rec is not None:
            what = {"patch": f"patched token {rec.get('token')} at iteration {rec.get('iteration')} from {rec.get('source_prompt')!r}",
                    "inject_off": f"injection of {rec.get('injected')} from iteration {rec.get('iteration')}",
                    "noise": f"noise {rec.get('sigma')} at iteration {rec.get('iteration')}"}[rec["type"]]
            lines.append(f"[yellow]{what}[/yellow] (u undoes)")
            lines.append(f"log p({''.join(rec['answer']['text'])!r}) {rec['logp_clean']:.3f} → {rec['logp_after']:.3f} "
                         f"(Δ {rec['delta']:+.3f}); top {rec['top_clean']['text']!r} → {rec['top_after']['text']!r}")
            if rec["type"] == "noise":
                at = rec["recovered_at"][t]
                lines.append(f"this token recovers {'at iteration ' + str(at) if at else 'not by r'}")
        return lines

    def causal_figure_specs(self, run: str) -> list:
        from recurlab.figures.inside import causal_trace_figure  # numpy: loaded only when ctrl+s saves a figure

        return [causal_trace_figure(self.causal, run=run, name="inspector")]
