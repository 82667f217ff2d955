"""Accuracy, loss or bits per byte against r from a run's saved sweeps: one line per task level
(every sweep file of the checkpoint, so that `--difficulties 5,6` sweeps join the standard one).

    fig = sweep_figure([RunDir("runs/cpu-demo")], y="acc")            # latest swept checkpoint
    fig = sweep_figure([RunDir("runs/cpu-demo"), RunDir("runs/cpu-fixed")], y="acc", step=1600)

With several runs each line is named "<run> level <d>" (or "<run>" for loss and bpb).
"""

from __future__ import annotations

from recurlab.figures.curves import _slug
from recurlab.figures.spec import FigureError, HeatFigure, Line, LineFigure
from recurlab.rundir import RunDir
from recurlab.sweep import LevelGrid, level_grid, load_sweeps

Y_CHOICES = ("acc", "loss", "bpb")
Y_LABELS = {
    "acc": "held-out exact match (fraction)",
    "loss": "held-out loss (nats per token)",
    "bpb": "held-out bits per byte",
}


def _sweeps_of(run: RunDir, step: int | None):
    saved = [s for s in load_sweeps(run) if s.rows]
    if not saved:
        raise FigureError(f"run {run.name} has no saved sweeps: run `recurlab sweep {run.name}` first "
                          "(or press s on the TUI's Sweep screen)")
    steps = sorted({s.step for s in saved})
    if step is None:
        step = steps[-1]
    chosen = [s for s in saved if s.step == step]
    if not chosen:
        raise FigureError(f"run {run.name} has no sweep of step {step}: swept steps are {', '.join(map(str, steps))}")
    return step, chosen


def trained_levels(run: RunDir) -> set[str] | None:
    """The task levels the run trained on (from run.yaml), or None for a text run or no config."""
    import yaml

    try:
        cfg = yaml.safe_load(run.config_path.read_text()) or {}
        data = cfg.get("data") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    if data.get("source", "task") != "task" or not isinstance(data.get("difficulties"), list):
        return None
    return {str(d) for d in data["difficulties"]}


def _tag(result) -> str:
    """What distinguishes one sweep file of a step from another, e.g. "levels_5-6"."""
    stem = result.path.stem if result.path is not None else ""
    return stem.split("_", 2)[2] if stem.count("_") >= 2 else stem


def sweep_lines(results: list, y: str, trained: set[str] | None, run: str, prefix: str = "") -> tuple[list[Line], set]:
    """Lines of `y` vs r from sweep results of one run and checkpoint (SweepResult-like: rows,
    complete, path), and the r values they cover."""
    lines, all_rs, seen = [], set(), {}
    for res in results:
        rows = sorted(res.rows, key=lambda row: row["r"])
        note = "" if res.complete else " (cancelled part way)"
        levels = sorted((k[4:] for k in rows[0] if k.startswith("acc@")), key=float)
        if y == "acc":
            if not levels:
                raise FigureError(f"the sweeps of {run} have no accuracy (a text run): use --y loss or --y bpb")
            series = [(f"level {d}" + (" (not trained)" if trained and d not in trained else ""), f"acc@{d}") for d in levels]
        else:
            if y == "bpb" and "bpb" not in rows[0]:
                raise FigureError(f"the sweeps of {run} have no bits per byte (a task run): use --y acc or --y loss")
            series = [(f"levels {', '.join(levels)}" if levels else "validation", y)]
        for label, key in series:
            seen[label] = seen.get(label, 0) + 1
            # a level swept twice at one step (two files) keeps both lines, told apart by file
            label = label if seen[label] == 1 else f"{label} [{_tag(res)}]"
            pts = [(row["r"], row[key]) for row in rows if row.get(key) is not None]
            all_rs.update(r for r, _ in pts)
            lines.append(Line(prefix + label + note, [float(r) for r, _ in pts], [float(v) for _, v in pts]))
    return lines, all_rs


def _figure(y: str, name: str, where: list[str], lines: list[Line], rs: set) -> LineFigure:
    rs = sorted(rs)
    logx = len(rs) > 1 and rs[-1] / max(rs[0], 1) >= 8
    return LineFigure(
        kind="sweep", name=f"sweep-{y}-{name}", title=f"{Y_LABELS[y].split(' (')[0]} vs r",
        subtitle=", ".join(where), xlabel="r (core iterations at test time)", ylabel=Y_LABELS[y],
        lines=lines, logx=logx, xticks=[float(r) for r in rs] if logx else None,
    )


def sweep_figure(runs: list[RunDir], y: str = "acc", step: int | None = None) -> LineFigure:
    """`y` vs r from the saved sweeps of each run's checkpoint `step` (default: its latest swept one)."""
    if y not in Y_CHOICES:
        raise FigureError(f"unknown --y {y!r}: use one of {', '.join(Y_CHOICES)}")
    lines, where, all_rs = [], [], set()
    for run in runs:
        got_step, chosen = _sweeps_of(run, step)
        where.append(f"{run.name} (checkpoint step {got_step})")
        more, rs = sweep_lines(chosen, y, trained_levels(run), run.name, f"{run.name} " if len(runs) > 1 else "")
        lines += more
        all_rs |= rs
    return _figure(y, "-".join(_slug(r.name) for r in runs[:3]), where, lines, all_rs)


def shown_sweep_figure(run: RunDir, step: int | None, result, y: str) -> LineFigure:
    """The one sweep a screen shows (saved or still running), e.g. the TUI's Sweep screen."""
    lines, rs = sweep_lines([result], y, trained_levels(run), run.name)
    where = [f"{run.name} (checkpoint step {step})" if step is not None else run.name]
    return _figure(y, _slug(run.name), where, lines, rs)


def level_heatmap_figure(run: RunDir, grid: LevelGrid) -> HeatFigure:
    """Accuracy per task level (rows) and r (columns) of `grid`, values written in the cells."""
    step, levels, rs = grid.step, grid.levels, grid.rs
    if not levels:
        raise FigureError(f"the sweeps of {run.name} at step {step} have no task-level accuracy (text runs have none)")
    trained = trained_levels(run) or set()
    r_mean = _r_mean(run)
    return HeatFigure(
        kind="sweep-heatmap", name=f"sweep-heatmap-{_slug(run.name)}-step{step}",
        title="held-out exact match per task level and r (percent in the cells)",
        subtitle=f"{run.name} (checkpoint step {step}), every saved sweep of the checkpoint",
        xlabel="r (core iterations at test time" + (f"; trained with r_mean = {r_mean})" if r_mean else ")"),
        ylabel="task level", value_label="held-out exact match (fraction)",
        matrix=[[grid.acc.get((lv, r)) for r in rs] for lv in levels],
        row_labels=[f"level {lv}" + ("" if not trained or str(lv) in trained else " (not trained)") for lv in levels],
        col_labels=[str(r) for r in rs], value_range=(0.0, 1.0), annotate=True,
    )


def _r_mean(run: RunDir) -> int | None:
    import yaml

    try:
        return int(((yaml.safe_load(run.config_path.read_text()) or {}).get("train") or {}).get("r_mean"))
    except (OSError, yaml.YAMLError, AttributeError, TypeError, ValueError):
        return None


def saved_level_heatmap(run: RunDir, step: int | None = None) -> HeatFigure:
    """The heatmap of every saved sweep of checkpoint `step` (default: the latest swept one)."""
    step, chosen = _sweeps_of(run, step)
    return level_heatmap_figure(run, level_grid(chosen, step))
