"""Figures from latent traces (the JSON files `recurlab inspect` writes to traces/, or the trace
the TUI's Inspector holds): a token x iteration heatmap, PCA trajectories with random starts,
and histograms of the iteration at which each token exits.

    trace, name = load_trace(RunDir("runs/cpu-demo"))                 # the newest trace
    heatmap_figure(trace, "flips", run="cpu-demo", trace_name=name)
    pca_figure(trace, token=19, run="cpu-demo", trace_name=name)
    exits_figure(RunDir("runs/cpu-demo"), groups=["level1-*", "level4-*"])   # one panel per glob

Heatmap values: "rel-change" ||s_i - s_{i-1}|| / ||s_i||, "kl-final" KL(p_i || p_r) (both on a log
colour scale), "flips": 1 where the top-1 prediction differs from the previous iteration's.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

from recurlab.figures.curves import _slug
from recurlab.figures.spec import FigureError, HeatFigure, HistFigure, Line, LineFigure
from recurlab.rundir import RunDir

HEAT_VALUES = {"rel-change": "relative change of the state", "kl-final": "KL to the final distribution (nats)",
               "flips": "top-1 prediction changed"}
TOKEN_SETS = ("all", "prompt", "answer")


def trace_files(run: RunDir) -> list[Path]:
    """The run's traces, oldest first."""
    if not run.traces_dir.is_dir():
        return []
    return sorted(run.traces_dir.glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name))


def _read(path: Path) -> dict:
    try:
        trace = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FigureError(f"cannot read trace {path}: {exc}") from None
    if not isinstance(trace, dict) or trace.get("kind") != "latent_trace" or not trace.get("tokens"):
        raise FigureError(f"{path} is not a latent trace written by `recurlab inspect`")
    return trace


def load_trace(run: RunDir, name: str | None = None) -> tuple[dict, str]:
    """The trace called `name` (file stem), or the newest one."""
    files = trace_files(run)
    if not files:
        raise FigureError(f"run {run.name} has no saved traces: run `recurlab inspect {run.name} --prompt ...` first")
    if name is None:
        return _read(files[-1]), files[-1].stem
    for p in files:
        if p.stem == name or p.name == name:
            return _read(p), p.stem
    raise FigureError(f"run {run.name} has no trace {name!r}: saved traces are {', '.join(p.stem for p in files[-8:])}")


def _subtitle(trace: dict, run: str, trace_name: str) -> str:
    crit = f", exit {trace['criterion']}" if trace.get("criterion") else ""
    return f"{run}, trace {trace_name}: {trace['prompt']!r} at r = {trace['r']}{crit}"


def _row_label(t: int, tok: dict) -> str:
    return f"{t} {tok['text']!r}"


def flips(tok: dict) -> list[float | None]:
    """1.0 where the most likely next token differs from the previous iteration's, else 0.0."""
    tops = [it[0]["id"] if it else None for it in tok["top"]]
    return [None] + [float(a != b) for a, b in zip(tops[1:], tops[:-1])]


def heatmap_figure(trace: dict, value: str = "rel-change", *, run: str, trace_name: str) -> HeatFigure:
    if value not in HEAT_VALUES:
        raise FigureError(f"unknown --value {value!r}: use one of {', '.join(HEAT_VALUES)}")
    toks = trace["tokens"]
    if value == "flips":
        matrix = [flips(t) for t in toks]
    else:
        matrix = [list(t[value.replace("-", "_")]) for t in toks]
    n_prompt = trace.get("n_prompt", len(toks))
    return HeatFigure(
        kind="heatmap", name=f"heatmap-{value}-{_slug(trace_name)}",
        title=f"{HEAT_VALUES[value].split(' (')[0]} per token and iteration", subtitle=_subtitle(trace, run, trace_name),
        xlabel="core iteration", ylabel="token (position, text)", value_label=HEAT_VALUES[value],
        matrix=matrix, row_labels=[_row_label(i, t) for i, t in enumerate(toks)],
        log_values=value != "flips", binary=value == "flips",
        divider=n_prompt if 0 < n_prompt < len(toks) else None,
        marks=[(t["exit_iteration"], i) for i, t in enumerate(toks) if t.get("exit_iteration") is not None]
        if trace.get("criterion") else [], mark_label="exit iteration",
    )


def default_token(trace: dict) -> int:
    """The first generated token, else the last prompt token (the one that predicts the answer)."""
    n = len(trace["tokens"])
    return trace["n_prompt"] if trace.get("n_prompt", n) < n else n - 1


def pca_figure(trace: dict, token: int | None = None, *, run: str, trace_name: str) -> LineFigure:
    toks = trace["tokens"]
    t = default_token(trace) if token is None else token
    if not 0 <= t < len(toks):
        raise FigureError(f"--token {t} is out of range: the trace has tokens 0..{len(toks) - 1}")
    lines = []
    pi = trace.get("path_independence")
    if pi:
        for k, start in enumerate(pi["pca"]):
            xs, ys = zip(*start[t])
            lines.append(Line(f"random start {k + 1} (seed {pi['seeds'][k]})", list(xs), list(ys), faint=True, mark_ends=True))
    pts = toks[t]["pca"]
    start = "zero start" if not trace.get("init_scale") else f"seed {trace.get('seed', 0)}"
    lines.append(Line(f"main trajectory ({start})", [p[0] for p in pts], [p[1] for p in pts], mark_ends=True))
    ev = (trace.get("pca") or {}).get("explained_variance_ratio") or [None, None]
    axis = [f"PC {k + 1}" + (f" ({100 * ev[k]:.0f}% of variance)" if k < len(ev) and ev[k] is not None else "")
            for k in range(2)]
    starts = f" and {pi['starts']} random starts" if pi else ""
    return LineFigure(
        kind="pca", name=f"pca-{_slug(trace_name)}-token{t}",
        title=f"latent trajectory of token {t} {toks[t]['text']!r} over {trace['r']} iterations{starts}",
        subtitle=_subtitle(trace, run, trace_name), xlabel=axis[0], ylabel=axis[1], lines=lines, equal_aspect=True,
    )


def _tokens(trace: dict, which: str) -> list[dict]:
    n = trace.get("n_prompt", len(trace["tokens"]))
    return {"all": trace["tokens"], "prompt": trace["tokens"][:n], "answer": trace["tokens"][n:]}[which]


def exits_figure(run: RunDir, groups: list[str] | None = None, tokens: str = "all") -> HistFigure:
    """Exit iterations of the run's traces: one panel per trace, or per glob in `groups` (the
    traces whose names match it, pooled)."""
    if tokens not in TOKEN_SETS:
        raise FigureError(f"unknown --tokens {tokens!r}: use one of {', '.join(TOKEN_SETS)}")
    files = trace_files(run)
    if not files:
        raise FigureError(f"run {run.name} has no saved traces: run `recurlab inspect {run.name} --prompt ... --exit kl:5e-4` first")
    traces = [(p.stem, _read(p)) for p in files]
    with_exit = [(n, t) for n, t in traces if t.get("criterion")]
    if not with_exit:
        raise FigureError(f"the traces of {run.name} have no exit rule: trace with `recurlab inspect ... --exit kl:5e-4`")
    crits = sorted({t["criterion"] for _, t in with_exit})
    out, max_r = [], 1
    for pattern in groups or [n for n, _ in with_exit]:
        matched = [t for n, t in with_exit if fnmatch.fnmatchcase(n, pattern)]
        if not matched:
            raise FigureError(f"no trace of {run.name} with an exit rule matches {pattern!r}")
        values = [tok["exit_iteration"] for t in matched for tok in _tokens(t, tokens) if tok.get("exit_iteration") is not None]
        max_r = max([max_r] + [t["r"] for t in matched])
        label = f"{pattern} ({len(matched)} traces, {len(values)} tokens)" if groups else f"{pattern} ({len(values)} tokens)"
        out.append((label, values))
    which = "" if tokens == "all" else f"{tokens} tokens, "
    return HistFigure(
        kind="exits", name=f"exits-{_slug(run.name)}", title="iteration at which each token exits",
        subtitle=f"{run.name}, {which}exit rule {', '.join(crits)}, at most r = {max_r}",
        xlabel="exit iteration", ylabel="share of tokens (%)", groups=out, max_value=max_r,
    )
