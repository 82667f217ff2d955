"""Training and evaluation curves of one or several runs, smoothed and scaled as on the TUI's
Curves screen (the same time-weighted EMA over the same bucket means, the same log-y filter).

    series = {"cpu-demo": load_series(RunDir("runs/cpu-demo"))}
    fig = curves_figure(series, "eval-acc", smooth=0.05, steps={"cpu-demo": 1600})

Metrics (`METRIC_NAMES`): train-loss, eval-loss and eval-acc (one line per r), lr, tokens-per-s,
grad-norm. `smooth` is the EMA span as a fraction of the plotted step range (the TUI's [ and ]
choose 0.005 to 0.2, 0.05 by default); 0 plots the raw points.
"""

from __future__ import annotations

import math
import re

import numpy as np

from recurlab.figures.spec import FigureError, Line, LineFigure
from recurlab.rundir import MetricsTail, RunDir
from recurlab.runlog.series import METRICS, RunSeries, bucket_mean, downsample, ema

# command-line names of the TUI's metrics, in the same order as series.METRICS
METRIC_NAMES = ("train-loss", "eval-loss", "eval-acc", "lr", "tokens-per-s", "grad-norm", "distill-kl")
Y_LABELS = {
    "train-loss": "training loss (nats per token)",
    "eval-loss": "held-out loss (nats per token)",
    "eval-acc": "held-out exact match (fraction)",
    "lr": "learning rate",
    "tokens-per-s": "throughput (tokens/s)",
    "grad-norm": "gradient norm (before clipping)",
    "distill-kl": "KL to the deep pass (nats per answer token)",
}
MAX_POINTS = 2000  # buckets per line: min/max downsampling keeps spikes, smoothing averages them


def metric_index(metric: str) -> int:
    if metric not in METRIC_NAMES:
        raise FigureError(f"unknown metric {metric!r}: use one of {', '.join(METRIC_NAMES)}")
    return METRIC_NAMES.index(metric)


def load_series(run: RunDir) -> RunSeries:
    """Every row of the run's metrics.jsonl (a torn last line is skipped)."""
    series = RunSeries()
    if run.metrics_path.exists():
        series.add_rows(MetricsTail(run.metrics_path).read_new())
    return series


def run_steps(runs: list[RunDir]) -> dict[str, str]:
    """Per run, where it stands, e.g. "step 1600, checkpoint 1600", for the subtitle."""
    out = {}
    for run in runs:
        step = (run.read_status() or {}).get("step")
        ck = run.latest_checkpoint()
        parts = ([f"step {step}"] if step is not None else []) + ([f"checkpoint {ck.step}"] if ck is not None else [])
        out[run.name] = ", ".join(parts)
    return out


def shape_line(xs: np.ndarray, ys: np.ndarray, *, smooth: float, logy: bool, buckets: int,
               raw_buckets: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One line as the Curves screen draws it (the screen calls this too): positive values only
    on a log axis; smoothed with the time-weighted EMA over `buckets` bucket means (the screen
    uses 4 per column of its plot), or else min/max downsampled to `raw_buckets` (the screen: one
    per column; a file: at least MAX_POINTS)."""
    if logy:
        keep = ys > 0
        xs, ys = xs[keep], ys[keep]
    if smooth > 0 and len(xs) > 1:
        xs, ys = bucket_mean(xs, ys, buckets)
        return xs, ema(xs, ys, smooth * (xs[-1] - xs[0]))
    return downsample(xs, ys, raw_buckets or max(buckets, MAX_POINTS))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "run"


def curves_figure(series: dict[str, RunSeries], metric: str, *, smooth: float = 0.0, logy: bool = False,
                  steps: dict[str, str] | None = None, buckets: int = MAX_POINTS) -> LineFigure:
    """Lines of `metric` for every run in `series` (in order). `steps` says where each run stands
    (`run_steps`), for the subtitle. Raises FigureError when no run has a point to plot."""
    title, kind, field = METRICS[metric_index(metric)]
    if not 0 <= smooth < math.inf:  # NaN fails the comparison too
        raise FigureError(f"--smooth must be a finite number >= 0 (a fraction of the step range, e.g. 0.05), got {smooth}")
    names = list(series)
    lines = []
    for name in names:
        store = series[name]
        for r in [None] if kind == "train" else store.eval_rs():
            xs, ys = shape_line(*store.series(kind, field, r), smooth=smooth, logy=logy, buckets=buckets)
            if not len(xs):
                continue
            label = name if r is None else (f"r={r}" if len(names) == 1 else f"{name} r={r}")
            lines.append(Line(label, xs.tolist(), ys.tolist()))
    if not lines:
        what = "eval rows (the run has not evaluated yet)" if kind == "eval" else "training rows"
        raise FigureError(f"no {title} to plot: {', '.join(names)} has no {what} in metrics.jsonl"
                          + ("; positive values are needed for --logy" if logy else ""))
    steps = steps or {}
    runs = ", ".join(f"{n} ({steps[n]})" if steps.get(n) else n for n in names)
    extras = [f"EMA span {smooth:g} of the steps"] if smooth > 0 else []
    return LineFigure(
        kind="curves", name=f"curves-{metric}-{'-'.join(_slug(n) for n in names[:3])}",
        title=title + (f" ({', '.join(extras)})" if extras else ""), subtitle=runs,
        xlabel="training step", ylabel=Y_LABELS[metric], lines=lines, logy=logy,
    )
