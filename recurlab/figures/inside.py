"""Figures from inside the loop: lenses, causal traces and stability summaries, read from the
JSON records that `recurlab lens train` and `recurlab inspect` write (no torch, no matplotlib).

    rec, name = load_record(RunDir("runs/cpu-demo"), "lenses", "tuned_lens")      # the newest
    lens_figure(rec, run="cpu-demo", name=name)           # KL to final vs iteration, one line per lens
    causal_trace_figure(rec, run="cpu-demo", name=name)   # recovery per (token, iteration)
    stability_figure(rec, run="cpu-demo", name=name)      # settling fraction and accuracy per level
"""

from __future__ import annotations

from pathlib import Path

from recurlab.figures.curves import _slug
from recurlab.figures.spec import FigureError, HeatFigure, Line, LineFigure
from recurlab.rundir import RunDir

RECORDS = {  # plot kind -> (folder in the run directory, record kind, the command that writes it)
    "lens": ("lenses", "tuned_lens", "recurlab lens train {run}"),
    "causal-trace": ("interventions", "intervention", "recurlab inspect {run} --prompt P --causal-trace --corrupt Q"),
    "stability": ("stability", "stability", "recurlab inspect {run} --stability"),
}


def load_record(run: RunDir | Path, plot_kind: str, name: str | None = None) -> tuple[dict, str]:
    """The newest record for `plot_kind` in the run (or the one whose file stem is `name`)."""
    import json

    folder, kind, command = RECORDS[plot_kind]
    root = run.path if isinstance(run, RunDir) else Path(run)
    files = sorted((root / folder).glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name)) if (root / folder).is_dir() else []
    found = []
    for p in files:
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and rec.get("kind") == kind and (plot_kind != "causal-trace" or rec.get("type") == "causal_trace"):
            found.append((rec, p.stem))
    if name is not None:
        found = [(r, n) for r, n in found if n == name or f"{n}.json" == name]
    if not found:
        what = f" called {name!r}" if name else ""
        raise FigureError(f"{root.name} has no {plot_kind} record{what} in {folder}/: run `{command.format(run=root.name)}` first")
    return found[-1]


def lens_figure(rec: dict, *, run: str, name: str) -> LineFigure:
    its = list(range(1, rec["iterations"] + 1))
    labels = {"coda": "coda lens", "logit": "logit lens", "tuned": f"tuned lens (before the {rec.get('place', 'coda')})"}
    lines = [Line(labels.get(k, k), its, v) for k, v in rec["kl"].items()]
    return LineFigure(
        kind="lens", name=f"lens-kl-{_slug(name)}", title="KL to the final distribution per core iteration",
        subtitle=f"{run}, lens {name}: {rec.get('heldout_sequences', '?')} held-out sequences, {rec.get('steps')} training steps",
        xlabel="core iteration", ylabel="KL(p_r || lens), nats", lines=lines, logy=True, xticks=its if len(its) <= 20 else None,
    )


def causal_trace_figure(rec: dict, *, run: str, name: str) -> HeatFigure:
    if rec.get("type") != "causal_trace":
        raise FigureError(f"{name} is a {rec.get('type')} record, not a causal trace")
    answer = "".join(rec["answer"]["text"])
    return HeatFigure(
        kind="causal-trace", name=f"causal-trace-{_slug(name)}",
        title="answer recovered by restoring one (token, iteration) state",
        subtitle=f"{run}: clean {rec['prompt']!r}, corrupted {rec['corrupt_prompt']!r}, answer {answer!r}, r = {rec['r']}",
        xlabel="core iteration", ylabel="token (position, text)", value_label="recovery of log p(answer)",
        matrix=rec["recovery"], row_labels=[f"{t} {tok!r}" for t, tok in enumerate(rec["tokens"])],
        divider=rec["n_prompt"] if 0 < rec["n_prompt"] < len(rec["tokens"]) else None, value_range=(0.0, 1.0),
    )


def stability_figure(rec: dict, *, run: str, name: str) -> LineFigure:
    groups = [g for g in rec["groups"] if isinstance(g["level"], int)]
    if not groups:
        raise FigureError(f"stability record {name} has no task levels to plot (a text summary: read its JSON)")
    xs = [g["level"] for g in groups]
    lines = [Line("fraction settling", xs, [g["settling"] for g in groups]),
             Line("fraction drifting", xs, [g["drifting"] for g in groups])]
    if all(g.get("accuracy") is not None for g in groups):
        lines.append(Line(f"exact match at r = {rec['r']}", xs, [g["accuracy"] for g in groups]))
    lines.append(Line("median spectral radius", xs, [g["radius_median"] for g in groups]))
    return LineFigure(
        kind="stability", name=f"stability-{_slug(name)}", title="token dynamics and accuracy per level",
        subtitle=f"{run}, {name}: r = {rec['r']}, tolerance {rec['tol']:g}, {rec['per_level']} held-out prompts per level",
        xlabel="level (permutations composed)", ylabel="fraction / radius", lines=lines, xticks=xs,
    )
