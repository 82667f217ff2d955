"""What `recurlab inspect` does beyond the latent trace: lenses, interventions at iteration i and
the stability summary (the options are declared on `inspect` in recurlab.cli.infer).

    recurlab inspect RUN -p "0123.1032=" --generate 4 --lens tuned --radius
    recurlab inspect RUN -p "0123.1032=" --generate 4 --patch-from "3210.1032=" --at 5,3
    recurlab inspect RUN -p "0123.1032=" --generate 4 --causal-trace --corrupt "3210.1032="
    recurlab inspect RUN -p "0123.1032=" --inject-off 4                # zeros from iteration 4 on
    recurlab inspect RUN -p "0123.1032=" --inject-off 4 --inject-from "3210.1032="
    recurlab inspect RUN -p "0123.1032=" --noise 0.5@4                 # and when each token recovers
    recurlab inspect RUN --stability --levels 1-8 --per-level 20 --r 16

Interventions are written to RUN/interventions/NAME.json beside the traces (./interventions/ for
a model folder) and stability summaries to RUN/stability/NAME.json; a taken name gets -2, -3, ...
torch loads only inside the calls.
"""

from __future__ import annotations

import typer

from recurlab.cli.common import print_table
from recurlab.errors import InferenceError

VERDICT_MARK = {"settling": "S", "orbiting": "O", "drifting": "D"}


def parse_levels(spec: str | None) -> list[int] | None:
    """"1-8" or "1,2,5" -> [levels]."""
    if not spec:
        return None
    out = []
    try:
        for part in spec.split(","):
            if "-" in part:
                a, b = (int(v) for v in part.split("-"))
                out += list(range(a, b + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise InferenceError(f"--levels {spec!r} must be levels like 1-8 or 1,2,5") from None
    if not out or min(out) < 1:
        raise InferenceError(f"--levels {spec!r} must name levels >= 1, e.g. 1-8")
    return sorted(set(out))


def chosen(patch_from, at, causal, corrupt, inject_off, noise) -> str | None:
    """Which intervention the options ask for (at most one), checked before the model loads."""
    asked = [k for k, v in (("patch", patch_from is not None or at is not None), ("causal", causal or corrupt is not None),
                            ("inject", inject_off is not None), ("noise", noise is not None)) if v]
    if len(asked) > 1:
        raise InferenceError("give one intervention per call: --patch-from/--at, --causal-trace/--corrupt, --inject-off "
                             "or --noise")
    kind = asked[0] if asked else None
    if kind == "patch" and (patch_from is None or at is None):
        raise InferenceError("--patch-from PROMPT and --at TOKEN,ITER go together (e.g. --patch-from '3210.1032=' --at 5,3)")
    if kind == "causal" and (not causal or corrupt is None):
        raise InferenceError("--causal-trace needs --corrupt PROMPT (a prompt as long as --prompt whose answer differs)")
    return kind


def lens_for(opened, lens: str):
    from recurlab.engine.lens import get_lens  # torch: loaded only when this runs

    if lens == "tuned":
        from recurlab.engine.lens_train import load_tuned_lens  # torch: loaded only when this runs

        return get_lens("tuned", load_tuned_lens(opened))
    return get_lens(lens)


def print_dynamics(trace: dict) -> None:
    toks = trace["tokens"]
    width = max(3, max(len(repr(t["text"])) for t in toks))
    parts = []
    for t in toks:
        v = t.get("verdict") or {}
        extra = f"@{v['at']}" if v.get("at") else (f"/{v['period']}" if v.get("period") else "")
        rad = f" ρ={t['radius']:.3g}" if t.get("radius") is not None else ""
        parts.append(f"{repr(t['text']).ljust(width)}  {v.get('kind', '-')}{extra}{rad}")
    typer.echo(f"dynamics (lens {trace.get('lens', 'coda')}, tolerance {trace.get('verdict_tol')}; "
               "settling@i: below it from iteration i, orbiting/p: period p, ρ: spectral radius):")
    for line in parts:
        typer.echo("  " + line)


def run_intervention(kind: str, opened, *, prompt: str, r: int, answer_tokens: int, init_scale, seed: int, lens,
                     name: str | None, target: str | None, patch_from, at, corrupt, inject_off, inject_from, noise) -> None:
    # torch: loaded only when this runs
    from recurlab.engine.interventions import (add_noise, causal_trace, inject_off as switch_off, parse_at, parse_noise,
                                               patch, prepare, save_intervention, with_prompt)
    from recurlab.engine.records import record_root

    model, tok, engine = opened.model, opened.tokenizer, opened.engine
    seq = prepare(engine, prompt, answer_tokens, r, init_scale, seed, target)
    common = dict(init_scale=init_scale, seed=seed)
    if kind == "patch":
        token, iteration = parse_at(at)
        rec = patch(model, tok, seq, with_prompt(engine, patch_from, seq), token, iteration, r, lens=lens, **common)
        what = f"patch of token {token} {rec['tokens'][token]!r} at iteration {iteration} from {patch_from!r}"
    elif kind == "causal":
        rec = causal_trace(model, tok, seq, with_prompt(engine, corrupt, seq), r, **common)
    elif kind == "inject":
        src = with_prompt(engine, inject_from, seq) if inject_from is not None else None
        rec = switch_off(model, tok, seq, inject_off, r, source=src, lens=lens, **common)
        what = f"injection of {rec['injected']!r} from iteration {inject_off} on"
    else:
        sigma, iteration = parse_noise(noise)
        rec = add_noise(model, tok, seq, sigma, iteration, r, lens=lens, **common)
        what = f"noise of relative size {sigma:g} at iteration {iteration}"
    rec["source"] = opened.source
    path = save_intervention(record_root(opened), rec, name)
    answer = "".join(rec["answer"]["text"])
    if kind == "causal":
        _print_causal(rec, answer)
    else:
        typer.echo(f"{what}: log p({answer!r}) {rec['logp_clean']:.4f} -> {rec['logp_after']:.4f} "
                   f"(change {rec['delta']:+.4f}); top prediction {rec['top_clean']['text']!r} {rec['top_clean']['p']:.3f} -> "
                   f"{rec['top_after']['text']!r} {rec['top_after']['p']:.3f}; answer {'kept' if rec['answer_kept'] else 'changed'}")
    if kind == "noise":
        rec_at = ", ".join(f"{t}:{'-' if a is None else a}" for t, a in enumerate(rec["recovered_at"]))
        typer.echo(f"recovered (relative distance < {rec['tol']:g} to the end) at iteration, per token: {rec_at}")
    if kind == "inject":
        final = ", ".join(f"{row[-1]:.3g}" for row in rec["distance"])
        typer.echo(f"relative distance to the unchanged state at iteration {r}, per token: {final}")
    typer.echo(f"intervention written to {path}")


def _print_causal(rec: dict, answer: str) -> None:
    typer.echo(f"causal trace: clean {rec['prompt']!r} log p({answer!r}) {rec['logp_clean']:.4f}, corrupted "
               f"{rec['corrupt_prompt']!r} {rec['logp_corrupt']:.4f}; cell = recovery (%) after restoring that one state")
    r = rec["r"]
    width = max(3, max(len(repr(t)) for t in rec["tokens"]))
    typer.echo(" " * (width + 5) + "".join(f"{i:>5}" for i in range(1, r + 1)))
    for t, (tok, row) in enumerate(zip(rec["tokens"], rec["recovery"])):
        cells = "".join("    -" if v is None else f"{round(100 * v):5d}" for v in row)
        typer.echo(f"{t:>3}  {repr(tok).ljust(width)}{cells}")
    carriers = [c for c in rec["carriers"] if c["from_iteration"] is not None]
    if carriers:
        typer.echo("recoverable (>= 50% from that iteration on) from: "
                   + ", ".join(f"token {c['token']} {c['text']!r} from iteration {c['from_iteration']}" for c in carriers))
    else:
        typer.echo("no single (token, iteration) state recovers half of the answer's log-probability")


def run_stability(opened, *, levels: list[int] | None, per_level: int, r: int, data: str | None, tol: float, name: str | None,
                  seed: int) -> None:
    from pathlib import Path

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from recurlab.engine.records import default_name, record_root, write_json  # torch: loaded only when this runs
    from recurlab.engine.stability import stability_summary

    prompts = None
    if data is not None:
        try:
            prompts = [ln for ln in Path(data).read_text(encoding="utf-8").splitlines() if ln.strip()][:per_level]
        except (OSError, UnicodeDecodeError) as exc:
            raise InferenceError(f"cannot read --data {data}: {getattr(exc, 'strerror', None) or exc}") from None
        if not prompts:
            raise InferenceError(f"--data {data} has no non-empty lines (one prompt per line)")
    progress = Progress(TextColumn("stability"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with progress:
        bar = progress.add_task("prompts", total=None)
        rec = stability_summary(opened, levels=levels, per_level=per_level, r=r, tol=tol, prompts=prompts,
                                seed=seed, on_prompt=lambda k, n: progress.update(bar, completed=k, total=n))
    path = write_json(record_root(opened) / "stability", name or default_name("stability"), rec)

    def f(v, pct=False):
        return "-" if v is None else (f"{100 * v:.1f}%" if pct else f"{v:.3g}")

    print_table(["level", "prompts", "tokens", f"acc@r={rec['r']}", "settling", "orbiting", "drifting", "ρ median", "ρ p90"],
                [[str(g["level"]), str(g["prompts"]), str(g["tokens"]), f(g["accuracy"], True), f(g["settling"], True),
                  f(g["orbiting"], True), f(g["drifting"], True), f(g["radius_median"]), f(g["radius_p90"])]
                 for g in rec["groups"] + [{**rec["overall"], "level": "all", "prompts": sum(g["prompts"] for g in rec["groups"]),
                                             "accuracy": None}]], right=True)
    which = "every position of each prompt" if prompts is not None else "the positions that predict the answer"
    typer.echo(f"tokens: {which}; settling below a relative change of {tol:g}; "
               f"ρ: spectral radius of the core step at the final state. Written to {path}")
