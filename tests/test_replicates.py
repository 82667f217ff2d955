"""Several seeds: `train --seeds`, `sweep` over several runs with mean and spread, and the aggregation."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import recurlab.cli.runs  # noqa: F401  (registers the commands)
from recurlab.cli.app import app
from recurlab.errors import InferenceError
from recurlab.replicates import aggregate, format_aggregate, parse_seeds
from recurlab.rundir import RunDir, read_json
from recurlab.sweep import SweepResult
import recurlab.cli.sweep  # noqa: F401


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(res) -> str:
    assert res.exit_code == 2, (res.exit_code, res.output)
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    return lines[0]


@pytest.fixture(scope="module")
def seed_runs(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    res = invoke("train", "--profile", "tiny", "--name", "t", "--seeds", "0,1,2", "--foreground", "--runs-dir", runs,
                 "train.max_steps=4", "train.eval_every=4", "train.checkpoint_every=4", "data.eval_examples=16")
    assert res.exit_code == 0, res.output
    return runs


def test_train_seeds_makes_one_finished_run_per_seed(seed_runs):
    for s in (0, 1, 2):
        run = RunDir(seed_runs / f"t-s{s}")
        assert yaml.safe_load(run.config_path.read_text())["train"]["seed"] == s
        assert run.read_status()["state"] == "finished"
    assert sorted(p.name for p in seed_runs.iterdir()) == ["t-s0", "t-s1", "t-s2"]


def test_train_seeds_refuses_bad_input_before_creating_anything(seed_runs):
    before = sorted(p.name for p in seed_runs.iterdir())
    common = ("train", "--profile", "tiny", "--runs-dir", seed_runs, "--foreground")
    assert "twice" in one_line_error(invoke(*common, "--name", "u", "--seeds", "0,0"))
    assert "integers" in one_line_error(invoke(*common, "--name", "u", "--seeds", "a,b"))
    assert "drop the train.seed" in one_line_error(invoke(*common, "--name", "u", "--seeds", "0,1", "train.seed=3"))
    # t-s2 exists: t-s5 must not be created either
    assert "t-s2" in one_line_error(invoke(*common, "--name", "t", "--seeds", "5,2"))
    assert sorted(p.name for p in seed_runs.iterdir()) == before


def test_sweep_over_seeds_prints_mean_and_spread_of_each_runs_sweep(seed_runs, tmp_path):
    res = invoke("sweep", "t-s*", "--r", "1,3", "--runs-dir", seed_runs)
    assert res.exit_code == 0, res.output
    saved = [read_json(next((seed_runs / f"t-s{s}" / "sweeps").glob("*.json"))) for s in (0, 1, 2)]
    for level in (2, 3):
        for i, r in enumerate((1, 3)):
            values = [100 * sv["rows"][i][f"acc@{level}"] for sv in saved]
            cell = f"{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f} ({min(values):.0f}–{max(values):.0f})"
            assert cell in res.output, (cell, res.output)
    # --reuse aggregates the saved sweeps without sweeping again; --out keeps a CSV and never replaces it
    files = sorted(p.name for p in (seed_runs / "t-s0" / "sweeps").iterdir())
    out = tmp_path / "seeds.csv"
    again = invoke("sweep", "t-s0", "t-s1", "t-s2", "--r", "3", "--reuse", "--out", out, "--runs-dir", seed_runs)
    assert again.exit_code == 0, again.output
    assert again.output.count("reusing") == 3
    assert sorted(p.name for p in (seed_runs / "t-s0" / "sweeps").iterdir()) == files
    (row,) = list(csv.DictReader(io.StringIO(out.read_text())))
    want = [sv["rows"][1]["acc@3"] for sv in saved]
    assert row["r"] == "3" and row["n"] == "3"
    assert float(row["acc@3_mean"]) == pytest.approx(np.mean(want), abs=1e-6)
    assert float(row["acc@3_sd"]) == pytest.approx(np.std(want, ddof=1), abs=1e-6)
    kept = out.read_text()
    assert "already exists" in one_line_error(invoke("sweep", "t-s*", "--r", "3", "--reuse", "--out", out,
                                                     "--runs-dir", seed_runs))
    assert out.read_text() == kept
    assert "matches" in one_line_error(invoke("sweep", "nope-*", "--r", "3", "--runs-dir", seed_runs))
    assert "need --r" in one_line_error(invoke("sweep", "t-s*", "--runs-dir", seed_runs))


def test_aggregate_keeps_only_the_r_every_run_has():
    a = SweepResult("a", 10, [{"r": 1, "loss": 1.0, "tokens_per_s": 5, "acc@4": 0.25},
                              {"r": 8, "loss": 0.5, "tokens_per_s": 5, "acc@4": 0.75}])
    b = SweepResult("b", 10, [{"r": 8, "loss": 0.7, "tokens_per_s": 5, "acc@4": 0.95}])
    agg = aggregate([a, b])
    assert list(agg.rows) == [8]
    cell = agg.rows[8]["acc@4"]
    assert cell.mean == pytest.approx(0.85) and cell.sd == pytest.approx(np.std([0.75, 0.95], ddof=1))
    assert "85.0 ± 14.1 (75–95)" in format_aggregate(agg)
    other = SweepResult("c", 10, [{"r": 8, "loss": 0.7, "tokens_per_s": 5, "acc@5": 0.5}])
    with pytest.raises(InferenceError, match="share no r or no level"):
        aggregate([a, other])
    assert parse_seeds("2, 0,1") == [2, 0, 1]
