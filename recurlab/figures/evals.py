"""Figures from `recurlab eval` results (RUN/evals/*.json): the metric of each task against r,
with lm-eval's standard errors, and per task the histogram of the iterations at which tokens
exited under the evaluation's exit rule (the paper's figure).

    record = load_eval(RunDir("runs/cpu-demo"))               # the newest evaluation
    eval_vs_r_figure(record, run="cpu-demo")
    eval_exits_figure(record, run="cpu-demo", r=32)           # default: the largest r with exits
"""

from __future__ import annotations

from pathlib import Path

from recurlab.evaluation.results import load_evals
from recurlab.figures.curves import _slug
from recurlab.figures.spec import FigureError, HistFigure, Line, LineFigure
from recurlab.rundir import RunDir

ACCURACY_METRICS = ("exact_match", "acc", "acc_norm")


def eval_files(run: RunDir) -> list[tuple[dict, Path]]:
    """The run's saved evaluations with at least one row, oldest first."""
    return [(rec, Path(rec["path"])) for rec in load_evals(run.path / "evals") if rec["rows"]]


def has_evals(run: RunDir, with_exits: bool = False) -> bool:
    return any(not with_exits or _has_exits(d) for d, _ in eval_files(run))


def _has_exits(record: dict) -> bool:
    return any(h for per_r in (record.get("histograms") or {}).values() for h in per_r.values())


def load_eval(run: RunDir, name: str | None = None, with_exits: bool = False) -> tuple[dict, str]:
    """The evaluation called `name` (file stem), or the newest one (with exit histograms if asked)."""
    found = eval_files(run)
    if not found:
        raise FigureError(f"run {run.name} has no saved evaluations: run `recurlab eval {run.name} --tasks ...` first")
    if name is not None:
        for data, p in found:
            if p.stem == name or p.name == name:
                return data, p.stem
        raise FigureError(f"run {run.name} has no evaluation {name!r}: saved ones are {', '.join(p.stem for _, p in found[-8:])}")
    if with_exits:
        found = [(d, p) for d, p in found if _has_exits(d)]
        if not found:
            raise FigureError(f"the evaluations of {run.name} recorded no exits: evaluate with `--exit kl:5e-4`")
    return found[-1][0], found[-1][1].stem


def _short(task: str) -> str:
    """The embedded tasks' lm-eval names without their namespace: recurlab_permutation4_level4 -> permutation4_level4."""
    return task.removeprefix("recurlab_")


def _subtitle(record: dict, run: str, name: str) -> str:
    step = (record.get("source") or {}).get("checkpoint_step")
    exit_rule = f", exit {record['exit']}" if record.get("exit") else ""
    limit = (record.get("settings") or {}).get("limit")
    return (f"{run}" + (f" (checkpoint step {step})" if step is not None else "") + f", evaluation {name}{exit_rule}"
            + (f", at most {limit} examples per task" if limit else ""))


def eval_vs_r_figure(record: dict, *, run: str, name: str) -> LineFigure:
    tasks = list(dict.fromkeys(row["task"] for row in record["rows"]))
    metrics = sorted({row["metric"].split(",")[0] for row in record["rows"]})
    lines, rs = [], set()
    for task in tasks:
        rows = sorted((row for row in record["rows"] if row["task"] == task and row.get("value") is not None), key=lambda row: row["r"])
        metric = rows[0]["metric"] if rows else ""
        label = _short(task) if len(metrics) == 1 else f"{_short(task)} ({metric})"
        yerr = [row.get("stderr") or 0.0 for row in rows]
        lines.append(Line(label, [float(row["r"]) for row in rows], [float(row["value"]) for row in rows],
                          yerr=yerr if any(yerr) else None))
        rs.update(row["r"] for row in rows)
    rs = sorted(rs)
    logx = len(rs) > 1 and rs[-1] / max(rs[0], 1) >= 8
    unit = " (fraction)" if all(m in ACCURACY_METRICS for m in metrics) else ""
    return LineFigure(
        kind="evals", name=f"evals-{_slug(run)}-{_slug(name)}", title=f"{', '.join(metrics)} per task vs r",
        subtitle=_subtitle(record, run, name), xlabel="r (core iterations at test time)",
        ylabel=f"{', '.join(metrics)}{unit}" + (", ± 1 standard error" if any(ln.yerr for ln in lines) else ""),
        lines=lines, logx=logx, xticks=[float(r) for r in rs] if logx else None,
    )


def eval_exits_figure(record: dict, *, run: str, name: str, r: int | None = None) -> HistFigure:
    hists = record.get("histograms") or {}
    with_r = sorted({int(k) for per_r in hists.values() for k, h in per_r.items() if h})
    if not with_r:
        raise FigureError(f"evaluation {name} of {run} recorded no exits: evaluate with `--exit kl:5e-4`")
    if r is None:
        r = with_r[-1]
    elif r not in with_r:
        raise FigureError(f"evaluation {name} has exits at r = {', '.join(map(str, with_r))}, not at {r}: choose one with --r")
    groups = []
    for task, per_r in hists.items():
        counts = per_r.get(str(r)) or {}
        values = [int(it) for it, n in counts.items() for _ in range(int(n))]
        if values:
            groups.append((f"{_short(task)} ({len(values)} tokens)", sorted(values)))
    top = max([r] + [v for _, vals in groups for v in vals])
    return HistFigure(
        kind="exits", name=f"exits-{_slug(run)}-{_slug(name)}-r{r}", title=f"iteration at which each token exits, at most r = {r}",
        subtitle=_subtitle(record, run, name), xlabel="exit iteration", ylabel="share of tokens (%)",
        groups=groups, max_value=top,
    )
