"""`recurlab plot` and recurlab.figures: every kind of figure from small run directories the tests
make, the files' size and content, CSV export against series computed here from the run files,
never overwriting, and the bad inputs (one `error:` line, exit 2, nothing written).
"""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from figure_runs import EVAL_RS, SWEEP_RS, make_figure_runs, png_size

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    return make_figure_runs(tmp_path_factory.mktemp("fig") / "runs")


@pytest.fixture
def runs(made, tmp_path) -> Path:
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(made, root)
    return root


def plot(runs: Path, *args) -> list[Path]:
    """`recurlab plot ARGS --runs-dir RUNS` in this process; the written paths."""
    import importlib

    from recurlab.cli import COMMAND_MODULES
    from recurlab.cli.app import app

    for name in COMMAND_MODULES:  # as `recurlab` does: every command registered
        importlib.import_module(f"recurlab.cli.{name}")

    res = CliRunner().invoke(app, ["plot", *map(str, args), "--runs-dir", str(runs)])
    assert res.exit_code == 0, res.output
    return [Path(line) for line in res.stdout.splitlines() if line.strip()]


def read_csv(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text())))


def check_files(paths: list[Path], size: tuple[int, int], names: list[str]) -> str:
    """PNG of `size` with ink on it, a PDF, and an SVG whose text holds every string in `names`."""
    from matplotlib.image import imread

    by = {p.suffix: p for p in paths}
    assert {".png", ".svg", ".pdf"} <= set(by)
    assert png_size(by[".png"]) == size
    pixels = imread(by[".png"])
    assert pixels.shape[:2] == (size[1], size[0]) and pixels.std() > 0.05  # not a blank canvas
    assert by[".pdf"].read_bytes()[:5] == b"%PDF-" and by[".pdf"].stat().st_size > 2000
    svg = by[".svg"].read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    for name in names:
        assert name.replace("'", "&#39;") in svg or name in svg, f"{name!r} not in the SVG"
    return svg


# ---- each kind -----------------------------------------------------------------------------------


def test_curves_overlay_several_runs(runs):
    paths = plot(runs, "curves", "alpha", "beta", "--metric", "eval-acc", "--smooth", "0.05")
    assert all(p.parent == runs / "alpha" / "figures" for p in paths)
    check_files(paths, (960, 600), ["alpha r=1", "alpha r=4", "beta r=4", "training step",
                                    "held-out exact match (fraction)", "alpha (step 120)", "beta (step 90)"])


def test_sweep_accuracy_per_level_vs_r(runs):
    paths = plot(runs, "sweep", "alpha", "--size", "800x500", "--csv")
    svg = check_files(paths, (800, 500), ["level 2", "level 3", "level 4 (not trained)", "alpha (checkpoint step 120)",
                                          "r (core iterations at test time)", "held-out exact match (fraction)"])
    for r in SWEEP_RS:  # log2 axis labelled at the swept r
        assert f">{r}<" in svg
    rows = read_csv(next(p for p in paths if p.suffix == ".csv"))
    saved = json.loads((runs / "alpha" / "sweeps" / "step_00000120.json").read_text())["rows"]
    level3 = [(float(x), float(y)) for label, x, y in rows[1:] if label == "level 3"]
    assert level3 == [(row["r"], row["acc@3"]) for row in saved]


def test_sweep_heatmap_merges_every_sweep_of_the_checkpoint(runs):
    paths = plot(runs, "sweep-heatmap", "alpha", "--csv")
    check_files(paths, (960, 600), ["level 2", "level 4 (not trained)", "task level", "trained with r_mean = 4",
                                    "alpha (checkpoint step 120)"])
    want = {}
    for name in ("step_00000120.json", "step_00000120_levels_4.json"):
        for row in json.loads((runs / "alpha" / "sweeps" / name).read_text())["rows"]:
            want.update({(f"level {k[4:]}", row["r"]): v for k, v in row.items() if k.startswith("acc@")})
    rows = read_csv(next(p for p in paths if p.suffix == ".csv"))
    got = {(label.replace(" (not trained)", ""), int(r)): float(v) for _i, label, r, v in rows[1:] if v != ""}
    assert got == want and len(rows) - 1 == 3 * len(SWEEP_RS)  # levels 2, 3, 4 x every swept r; blanks where unmeasured


def test_sweep_loss_of_two_runs_and_missing_sweeps(runs, tmp_path):
    paths = plot(runs, "sweep", "alpha", "--y", "loss", "--format", "png,svg,pdf")
    check_files(paths, (960, 600), ["levels 2, 3", "levels 4", "held-out loss (nats per token)"])


def test_bits_per_byte_of_a_text_run(runs):
    paths = plot(runs, "sweep", "gamma", "--y", "bpb", "--csv")
    check_files(paths, (960, 600), ["validation (cancelled part way)", "held-out bits per byte", "gamma (checkpoint step 50)"])
    rows = read_csv(next(p for p in paths if p.suffix == ".csv"))
    saved = json.loads((runs / "gamma" / "sweeps" / "step_00000050.json").read_text())["rows"]
    assert [(float(x), float(y)) for _s, x, y in rows[1:]] == [(row["r"], row["bpb"]) for row in saved]


def test_exit_histograms_per_group(runs):
    paths = plot(runs, "exits", "alpha", "--source", "traces", "--groups", "short-*,long-*", "--csv")
    check_files(paths, (960, 600), ["short-* (1 traces", "long-* (2 traces", "exit iteration", "share of tokens (%)",
                                    "exit rule kl:0.01"])
    rows = read_csv(next(p for p in paths if p.suffix == ".csv"))
    assert rows[0] == ["group", "exit iteration", "count", "share of tokens (%)"]
    # independently: pool the exit iterations of both long traces from their JSON
    expected = Counter()
    for name in ("long-a", "long-b"):
        trace = json.loads((runs / "alpha" / "traces" / f"{name}.json").read_text())
        expected.update(t["exit_iteration"] for t in trace["tokens"])
    got = {int(it): int(n) for label, it, n, _share in rows[1:] if label.startswith("long-*")}
    assert got == {i: expected.get(i, 0) for i in range(1, 7)}
    total = sum(expected.values())
    shares = [float(s) for label, _it, _n, s in rows[1:] if label.startswith("long-*")]
    assert shares == pytest.approx([100 * expected.get(i, 0) / total for i in range(1, 7)])


@pytest.mark.parametrize("value", ["rel-change", "kl-final", "flips"])
def test_trace_heatmap(runs, value):
    paths = plot(runs, "heatmap", "alpha", "--trace", "long-a", "--value", value, "--csv")
    trace = json.loads((runs / "alpha" / "traces" / "long-a.json").read_text())
    check_files(paths, (960, 600), ["core iteration", "token (position, text)", "trace long-a", "'12+34='", "exit iteration"])
    rows = read_csv(next(p for p in paths if p.suffix == ".csv"))
    assert len(rows) - 1 == len(trace["tokens"]) * trace["r"]
    for row_i, _label, it, v in rows[1:]:
        tok, i = trace["tokens"][int(row_i)], int(it) - 1
        if value == "flips":  # 1 where the top-1 token differs from the previous iteration's
            want = None if i == 0 else float(tok["top"][i][0]["id"] != tok["top"][i - 1][0]["id"])
        else:
            want = tok[value.replace("-", "_")][i]
        assert (v == "" and want is None) or float(v) == want


def test_pca_trajectories_with_random_starts(runs):
    paths = plot(runs, "pca", "alpha", "--trace", "long-b", "--token", "2", "--csv")
    trace = json.loads((runs / "alpha" / "traces" / "long-b.json").read_text())
    check_files(paths, (960, 600), ["main trajectory (zero start)", "random start 1 (seed 1)", "random start 3 (seed 3)",
                                    "PC 1 (", "PC 2 (", "token 2"])
    rows = read_csv(next(p for p in paths if p.suffix == ".csv"))
    main = [(float(x), float(y)) for label, x, y in rows[1:] if label.startswith("main")]
    assert main == [tuple(p) for p in trace["tokens"][2]["pca"]]
    second = [(float(x), float(y)) for label, x, y in rows[1:] if label.startswith("random start 2")]
    assert second == [tuple(p) for p in trace["path_independence"]["pca"][1][2]]


def test_evaluation_metric_per_task_vs_r_with_standard_errors(runs):
    paths = plot(runs, "sweep", "alpha", "--source", "evals", "--csv")
    check_files(paths, (960, 600), ["perm_l1", "perm_l4", "exact_match (fraction), ± 1 standard error",
                                    "alpha (checkpoint step 120), evaluation eval-20261130-150000, exit kl:5e-4"])
    record = json.loads((runs / "alpha" / "evals" / "eval-20261130-150000.json").read_text())
    rows = read_csv(next(p for p in paths if p.suffix == ".csv"))
    assert rows[0][-1] == "standard error"
    want = [(row["task"], row["r"], row["value"], row["stderr"]) for row in record["rows"]]
    assert [(t, int(r), float(v), float(e)) for t, r, v, e in rows[1:]] == want


def test_exit_histograms_per_task_from_an_evaluation(runs):
    paths = plot(runs, "exits", "alpha", "--r", "4", "--csv")  # auto: the evaluation's exits before traces
    check_files(paths, (960, 600), ["perm_l1 (", "perm_l4 (", "at most r = 4", "exit iteration"])
    record = json.loads((runs / "alpha" / "evals" / "eval-20261130-150000.json").read_text())
    rows = read_csv(next(p for p in paths if p.suffix == ".csv"))
    for task in ("perm_l1", "perm_l4"):
        hist = record["histograms"][task]["4"]
        got = {int(it): int(n) for label, it, n, _s in rows[1:] if label.startswith(task + " ")}
        assert got == {i: hist.get(str(i), 0) for i in range(1, 5)}
    assert max(EVAL_RS) == 16 and plot(runs, "exits", "alpha", "--format", "png")[0].name == "exits-alpha-eval-20261130-150000-r16.png"


def test_parallel_sampler_wavefront(runs):
    paths = plot(runs, "wavefront", "alpha", "--csv")
    check_files(paths, (960, 600), ["generated position", "outer step", "frozen (token committed)", "core iterations so far",
                                    "alpha, wavefront-1", "2.00x fewer passes than sequential"])
    record = json.loads((runs / "alpha" / "wavefronts" / "wavefront-1.json").read_text())
    rows = read_csv(next(p for p in paths if p.suffix == ".csv"))
    assert rows[0] == ["row", "outer step", "generated position", "core iterations so far"]
    got = {(int(i), int(pos)): float(v) for i, _label, pos, v in rows[1:] if v != ""}
    want = {(i, s["first"] + j): float(n) for i, s in enumerate(record["steps"]) for j, n in enumerate(s["iterations"])}
    assert got == want


# ---- CSV against metrics.jsonl -------------------------------------------------------------------


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_curves_csv_equals_the_series_from_metrics_jsonl(runs):
    rows = _jsonl(runs / "alpha" / "metrics.jsonl")
    # raw eval accuracy per r
    paths = plot(runs, "curves", "alpha", "--metric", "eval-acc", "--csv", "--format", "png")
    got = read_csv(next(p for p in paths if p.suffix == ".csv"))
    assert got[0] == ["series", "training step", "held-out exact match (fraction)"]
    for r in (1, 4):
        want = [(row["step"], row["acc"]) for row in rows if row["kind"] == "eval" and row["r"] == r]
        assert [(float(x), float(y)) for s, x, y in got[1:] if s == f"r={r}"] == want
    # smoothed train loss: a time-weighted EMA whose weights decay with the step gap
    span = 0.1
    paths = plot(runs, "curves", "alpha", "--metric", "train-loss", "--smooth", span, "--csv", "--format", "svg")
    got = read_csv(next(p for p in paths if p.suffix == ".csv"))
    train = [(row["step"], row["loss"]) for row in rows if row["kind"] == "train"]
    tau = span * (train[-1][0] - train[0][0])
    want, s = [], train[0][1]
    for i, (x, y) in enumerate(train):
        if i:
            w = math.exp(-(x - train[i - 1][0]) / tau)
            s = w * s + (1 - w) * y
        want.append((x, s))
    assert [float(x) for _s, x, _y in got[1:]] == [x for x, _ in want]
    assert [float(y) for _s, _x, y in got[1:]] == pytest.approx([y for _, y in want], rel=1e-12)


# ---- never overwrite ---------------------------------------------------------------------------


def test_a_second_figure_gets_a_new_name(runs, tmp_path):
    out = tmp_path / "figs"
    first = plot(runs, "sweep", "alpha", "--out", out, "--csv")
    before = {p: p.read_bytes() for p in first}
    (out / "sweep-acc-alpha-2.svg").write_text("someone else's file")  # a stem taken by any one file is skipped
    second = plot(runs, "sweep", "alpha", "--out", out, "--csv")
    assert [p.name for p in second] == ["sweep-acc-alpha-3.png", "sweep-acc-alpha-3.svg", "sweep-acc-alpha-3.pdf",
                                        "sweep-acc-alpha-3.csv"]
    assert all(p.read_bytes() == b for p, b in before.items())
    assert (out / "sweep-acc-alpha-2.svg").read_text() == "someone else's file"


# ---- bad input: one line, exit 2, nothing written --------------------------------------------------


def run_plot(runs: Path, *args, hide_matplotlib: bool = False) -> subprocess.CompletedProcess:
    code = ("import sys\n" + ("sys.modules['matplotlib'] = None\n" if hide_matplotlib else "")
            + "from recurlab.cli import main\nsys.argv = ['recurlab'] + sys.argv[1:]\nmain()")
    return subprocess.run([sys.executable, "-c", code, "plot", *map(str, args), "--runs-dir", str(runs)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args,message", [
    (["histogram", "alpha"], "unknown kind 'histogram': use one of curves, sweep, sweep-heatmap, exits, heatmap, pca, wavefront"),
    (["wavefront", "beta"], "run beta has no saved wavefronts: generate with `recurlab generate beta --sampler parallel"),
    (["sweep", "beta"], "run beta has no saved sweeps: run `recurlab sweep beta` first"),
    (["sweep", "gamma"], "the sweeps of gamma have no accuracy (a text run): use --y loss or --y bpb"),
    (["sweep", "alpha", "--y", "bpb"], "the sweeps of alpha have no bits per byte (a task run): use --y acc or --y loss"),
    (["heatmap", "beta"], "run beta has no saved traces: run `recurlab inspect beta"),
    (["exits", "beta"], "run beta has no saved traces or evaluations to take exits from"),
    (["exits", "alpha", "--r", "3"], "has exits at r = 1, 4, 16, not at 3"),
    (["curves", "alpha", "--source", "evals"], "--source evals does not apply to plot curves"),
    (["pca", "alpha", "--trace", "nope"], "run alpha has no trace 'nope'"),
    (["curves", "alpha", "--metric", "perplexity"], "unknown metric 'perplexity': use one of train-loss"),
    (["sweep", "alpha", "--step", "7"], "run alpha has no sweep of step 7: swept steps are 120"),
    (["sweep", "alpha", "--format", "jpg"], "unknown figure format jpg"),
    (["sweep", "alpha", "--out", "FILE/sub"], "cannot create"),
    (["sweep", "alpha", "--out", "FILE"], "it is a file; choose a folder with --out"),
    (["sweep", "nosuchrun"], "no run"),
    (["sweep", "alpha", "--hide-matplotlib"], "figures need matplotlib, which is not installed: pip install 'recurlab[plot]'"),
])
def test_bad_input_gives_one_error_line(runs, tmp_path, args, message):
    hide = "--hide-matplotlib" in args
    args = [a.replace("FILE", str(tmp_path / "a-file")) for a in args if a != "--hide-matplotlib"]
    (tmp_path / "a-file").write_text("keep")
    before = sorted(p for p in runs.rglob("*"))
    res = run_plot(runs, *args, hide_matplotlib=hide)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.stderr, res.stderr
    assert message in lines[0]
    assert sorted(p for p in runs.rglob("*")) == before  # no figures/ folder, nothing else
    assert (tmp_path / "a-file").read_text() == "keep"


def test_importing_recurlab_and_its_figures_needs_no_matplotlib():
    code = ("import sys, recurlab, recurlab.figures, recurlab.cli.plot, recurlab.errors\n"
            "bad = [m for m in ('matplotlib', 'textual', 'torch') if m in sys.modules]\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
