"""`recurlab plot KIND RUN...`: publication figures (PNG, SVG, PDF) and CSV from run directories.

    recurlab plot curves cpu-demo cpu-fixed --metric eval-acc --smooth 0.05     # runs overlaid
    recurlab plot curves cpu-demo --metric train-loss --logy --csv
    recurlab plot sweep cpu-demo                     # exact match vs r, one line per level
    recurlab plot sweep cpu-demo cpu-fixed --y loss --step 1600
    recurlab plot sweep-heatmap cpu-demo             # accuracy per level x r over every sweep of the checkpoint
    recurlab plot sweep cpu-demo --source evals      # each task's metric vs r from `recurlab eval`
    recurlab plot exits cpu-demo --source evals --r 32   # exit histograms per task
    recurlab plot exits cpu-demo --source traces --groups 'level1-*,level4-*' --tokens answer
    recurlab plot heatmap cpu-demo --trace demo --value kl-final
    recurlab plot pca cpu-demo --trace demo --token 19
    recurlab plot wavefront cpu-demo                 # the newest saved parallel-sampler wavefront
    recurlab plot lens cpu-demo                      # KL to final vs iteration per lens (`recurlab lens train`)
    recurlab plot causal-trace cpu-demo              # the newest `inspect --causal-trace`, --trace NAME for another
    recurlab plot stability cpu-demo                 # the newest `inspect --stability`: settling and accuracy per level

Files go to RUN/figures/ (the first run's) unless --out says otherwise, and never replace an
existing file: a second figure of the same name gets -2, -3, ...
Needs matplotlib: `pip install 'recurlab[plot]'`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from recurlab.cli.app import app, examples
from recurlab.cli.common import RunsDirOption, fail, get_run, user_errors

KINDS = ("curves", "sweep", "sweep-heatmap", "exits", "heatmap", "pca", "wavefront", "lens", "causal-trace", "stability")


def _size(spec: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in spec.lower().split("x"))
    except ValueError:
        fail(f"--size {spec!r} must be WIDTHxHEIGHT in pixels, e.g. 960x600")
    return w, h


def _source(kind: str, source: str, run) -> str:
    """sweeps or evals for `sweep`, evals or traces for `exits`; "auto" takes what the run has."""
    from recurlab.figures import evals  # numpy and yaml: loaded only when this runs
    from recurlab.figures.spec import FigureError

    allowed = {"sweep": ("sweeps", "evals"), "exits": ("evals", "traces")}.get(kind, ())
    if source != "auto":
        if source not in allowed:
            raise FigureError(f"--source {source} does not apply to plot {kind}: use "
                              + (" or ".join(allowed) if allowed else "no --source (only sweep and exits take one)"))
        return source
    if not allowed:
        return ""
    if kind == "sweep":
        return "evals" if not run.sweeps_dir.is_dir() and evals.has_evals(run) else "sweeps"
    if evals.has_evals(run, with_exits=True):
        return "evals"
    if not run.traces_dir.is_dir() and not evals.has_evals(run):
        raise FigureError(f"run {run.name} has no saved traces or evaluations to take exits from: run "
                          f"`recurlab eval {run.name} --tasks ... --exit kl:5e-4` or `recurlab inspect {run.name} --prompt ...` first")
    return "traces"


def build(kind: str, runs: list, *, metric: str = "train-loss", smooth: float = 0.0, logy: bool = False, y: str = "acc",
          step: int | None = None, trace: str | None = None, value: str = "rel-change", token: int | None = None,
          groups: str = "", tokens: str = "all", source: str = "auto", evaluation: str | None = None, r: int | None = None):
    """The figure spec of `kind` for the given RunDirs (no matplotlib needed)."""
    from recurlab import figures  # numpy and yaml: loaded only when this runs
    from recurlab.figures import evals
    from recurlab.figures.spec import FigureError

    one = runs[0]
    if kind != "curves" and kind != "sweep" and len(runs) > 1:
        raise FigureError(f"plot {kind} takes one run, got {len(runs)}")
    src = _source(kind, source, one)
    if kind == "curves":
        series = {run.name: figures.load_series(run) for run in runs}
        return figures.curves_figure(series, metric, smooth=smooth, logy=logy, steps=figures.run_steps(runs))
    if kind == "sweep" and src == "evals":
        if len(runs) > 1:
            raise FigureError(f"plot sweep --source evals takes one run, got {len(runs)}")
        record, name = evals.load_eval(one, evaluation)
        return evals.eval_vs_r_figure(record, run=one.name, name=name)
    if kind == "sweep":
        return figures.sweep_figure(runs, y=y, step=step)
    if kind == "sweep-heatmap":
        from recurlab.figures.sweeps import saved_level_heatmap  # numpy and yaml: loaded only when this runs

        return saved_level_heatmap(one, step)
    if kind == "exits" and src == "evals":
        record, name = evals.load_eval(one, evaluation, with_exits=evaluation is None)
        return evals.eval_exits_figure(record, run=one.name, name=name, r=r)
    if kind == "exits":
        return figures.exits_figure(one, groups=[g for g in groups.split(",") if g] or None, tokens=tokens)
    if kind in ("lens", "causal-trace", "stability"):
        from recurlab.figures import inside  # numpy and yaml: loaded only when this runs

        record, name = inside.load_record(one, kind, trace)
        draw = {"lens": inside.lens_figure, "causal-trace": inside.causal_trace_figure, "stability": inside.stability_figure}
        return draw[kind](record, run=one.name, name=name)
    if kind == "wavefront":
        # numpy and yaml: loaded only when this runs
        from recurlab.figures.wavefront import load_wavefront, wavefront_figure

        record, name = load_wavefront(one, trace)
        return wavefront_figure(record, run=one.name, name=name)
    data, name = figures.load_trace(one, trace)
    if kind == "heatmap":
        return figures.heatmap_figure(data, value, run=one.name, trace_name=name)
    return figures.pca_figure(data, token, run=one.name, trace_name=name)


@app.command(epilog=examples('recurlab plot curves demo --metric eval-acc', 'recurlab plot sweep cpu-demo --csv', 'recurlab plot exits cpu-demo --r 32'))
def plot(
    kind: str = typer.Argument(..., help=f"What to plot: {', '.join(KINDS)}."),
    runs: list[str] = typer.Argument(..., help="Run names, unique prefixes or paths (curves and sweep overlay several)."),
    metric: str = typer.Option("train-loss", "--metric", help="curves: train-loss, eval-loss, eval-acc, lr, tokens-per-s, grad-norm."),
    smooth: float = typer.Option(0.0, "--smooth", help="curves: EMA span as a fraction of the steps, as the TUI's e (0.05); 0 = raw."),
    logy: bool = typer.Option(False, "--logy", help="curves: logarithmic y axis."),
    y: str = typer.Option("acc", "--y", help="sweep: acc (one line per level), loss or bpb."),
    step: int = typer.Option(None, "--step", help="sweep, sweep-heatmap: checkpoint step (default: the latest swept one)."),
    trace: str = typer.Option(None, "--trace", help="heatmap, pca, wavefront, lens, causal-trace, stability: file name in traces/, wavefronts/, lenses/, interventions/ or stability/ (default: the newest)."),
    value: str = typer.Option("rel-change", "--value", help="heatmap: rel-change, kl-final or flips."),
    token: int = typer.Option(None, "--token", help="pca: token position (default: the first generated token)."),
    groups: str = typer.Option("", "--groups", help="exits: comma-separated globs over trace names, one panel each (default: one per trace)."),
    tokens: str = typer.Option("all", "--tokens", help="exits from traces: all, prompt or answer tokens."),
    source: str = typer.Option("auto", "--source", help="sweep: sweeps or evals; exits: evals or traces (auto: what the run has)."),
    evaluation: str = typer.Option(None, "--eval", help="sweep, exits from evals: evaluation name in evals/ (default: the newest)."),
    r: int = typer.Option(None, "--r", help="exits from evals: the r whose exits to show (default: the largest)."),
    out: Path = typer.Option(None, "--out", help="Output folder (default: RUN/figures)."),
    fmt: str = typer.Option("png,svg,pdf", "--format", help="Comma-separated: png, svg, pdf."),
    csv: bool = typer.Option(False, "--csv", help="Also write the plotted series as CSV."),
    size: str = typer.Option("960x600", "--size", help="Figure size in pixels, WIDTHxHEIGHT."),
    dpi: int = typer.Option(150, "--dpi", help="Dots per inch (the size in pixels stays as given)."),
    runs_dir: str = RunsDirOption,
):
    """Figures for a paper from run directories, as PNG, SVG and PDF (and CSV with --csv)."""
    if kind not in KINDS:
        fail(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}, e.g. `recurlab plot sweep RUN`")
    rundirs = [get_run(r, runs_dir) for r in runs]
    with user_errors():
        # numpy and yaml: loaded only when this runs
        from recurlab.figures.render import check_formats, matplotlib_modules
        from recurlab.figures.save import run_figures_dir, save_figure

        formats = check_formats([f.strip().lower() for f in fmt.split(",") if f.strip()])
        pixels = _size(size)
        matplotlib_modules()  # a missing extra is reported before anything is read
        spec = build(kind, rundirs, metric=metric, smooth=smooth, logy=logy, y=y, step=step, trace=trace, value=value,
                     token=token, groups=groups, tokens=tokens, source=source, evaluation=evaluation, r=r)
        folder = out if out is not None else run_figures_dir(rundirs[0])
        paths = save_figure(spec, folder, formats, csv=csv, size=pixels, dpi=dpi)
    for p in paths:
        typer.echo(str(p))
