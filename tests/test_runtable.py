"""The run table: differing config keys, the filter grammar, sorting, grouping, summaries, and
`recurlab runs --json / --where` on run directories made here (no worker)."""

from __future__ import annotations

import json

import pytest
from recurlab.config import load_profile, to_yaml
from recurlab.rundir import RunDir
from recurlab.runtable import (FilterError, config_diff, differing_keys, family, load_records, parse_filter,
                               run_summary, short_names, sort_records)


def make_run(root, name, overrides, state="finished", loss=None, created=None):
    run = RunDir.create(root, name, to_yaml(load_profile("tiny", overrides)))
    run.write_status(state=state, loss=loss, step=60, created=created or run.read_status()["created"])
    return run


@pytest.fixture
def three(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "a", [], loss=2.0, created=1.0)
    make_run(root, "b", ["train.r_mean=16"], loss=1.5, created=2.0)  # differs from a in one key
    make_run(root, "c", ["train.r_mean=16", "train.k=4"], state="failed", loss=3.0, created=3.0)  # ... in two
    return root


def test_differing_keys_of_three_runs(three):
    recs = load_records(three)
    assert [r.name for r in recs] == ["a", "b", "c"]
    assert differing_keys([r.config for r in recs]) == ["train.r_mean", "train.k"]
    assert differing_keys([recs[0].config, recs[1].config]) == ["train.r_mean"]
    assert differing_keys([recs[1].config, recs[2].config]) == ["train.k"]
    assert differing_keys([recs[0].config, recs[0].config]) == []
    assert differing_keys([recs[0].config]) == []
    assert short_names(["train.r_mean", "train.k"]) == {"train.r_mean": "r_mean", "train.k": "k"}
    assert config_diff(recs[0].config, recs[2].config) == [("train.r_mean", 4, 16), ("train.k", 2, 4)]


def test_differing_keys_counts_a_missing_key_and_ignores_the_description():
    a = {"profile": "x", "description": "one", "train.r_mean": 8, "train.eval_r": (1, 4)}
    b = {"profile": "x", "description": "two", "train.r_mean": 8, "train.eval_r": (1, 4), "train.new": 1}
    c = {"profile": "x", "description": "two", "train.r_mean": 8.0, "train.eval_r": (1, 8)}
    assert differing_keys([a, b]) == ["train.new"]
    assert differing_keys([a, c]) == ["train.r_mean", "train.eval_r"]  # 8 vs 8.0: a different type in run.yaml


def test_filter_grammar(three):
    recs = load_records(three)

    def names(text):
        flt = parse_filter(text)
        return [r.name for r in recs if flt.matches(r)]

    assert names("") == ["a", "b", "c"]
    assert names("r_mean=16") == ["b", "c"]
    assert names("train.r_mean=16.0") == ["b", "c"]  # numbers compare as numbers
    assert names("r_mean=16 state=finished") == ["b"]
    assert names("r_mean!=16") == ["a"]
    assert names("k>=4") == ["c"]
    assert names("k<4 r_mean>4") == ["b"]
    assert names("loss<2") == ["b"]
    assert names("failed") == ["c"]  # a bare word: the state ...
    assert names("b") == ["b"]  # ... or part of the name
    assert names("tiny") == ["a", "b", "c"]  # ... or the profile
    assert names("profile=TI*") == ["a", "b", "c"]  # text: case-insensitive, * wildcard
    assert names("name~^[ab]$") == ["a", "b"]
    assert names("eval_r=1,4") == ["a", "b", "c"]
    assert names("nosuchrun") == []


@pytest.mark.parametrize("text, says", [
    ("r_mean=", "no value after"),
    ("bogus=1", "unknown key 'bogus'"),
    ("init_from=x", "ambiguous"),  # model.init_from and train.init_from
    ("k>big", "compares numbers"),
    ("name~(", "bad regular expression"),
    ("'open", "close the quote"),
    ("=3", "write KEY=VALUE"),
])
def test_filter_errors_name_the_term(text, says):
    with pytest.raises(FilterError, match=None) as err:
        parse_filter(text)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_sort_and_family(three):
    recs = load_records(three)
    assert [r.name for r in sort_records(recs, "loss")] == ["b", "a", "c"]
    assert [r.name for r in sort_records(recs, "loss", reverse=True)] == ["c", "a", "b"]
    assert [r.name for r in sort_records(recs, "train.k", reverse=True)] == ["c", "a", "b"]  # ties keep order
    assert family("cpu-0101-s2") == "cpu-0101" and family("cpu-s2x") == "cpu-s2x" and family("base") == "base"


def test_summary_last_and_best(tmp_path):
    run = make_run(tmp_path, "s", [])
    run.append_metrics([
        {"kind": "train", "step": 1, "time": 0, "loss": 3.0, "lr": 0.1},
        {"kind": "train", "step": 2, "time": 1, "loss": 1.0, "lr": 0.2},
        {"kind": "train", "step": 3, "time": 2, "loss": 2.0, "lr": 0.3},
        {"kind": "eval", "step": 2, "time": 1, "r": 4, "loss": 1.5, "acc": 0.7},
        {"kind": "eval", "step": 3, "time": 2, "r": 4, "loss": 1.7, "acc": 0.5},
    ])
    stats = {s.metric: s for s in run_summary(run)}
    loss = stats["train loss"]
    assert (loss.last, loss.best, loss.best_step, loss.count) == (2.0, 1.0, 2, 3)
    assert (stats["train lr"].last, stats["train lr"].best) == (0.3, 0.3)  # no "best" learning rate
    assert (stats["eval acc r=4"].best, stats["eval acc r=4"].best_step) == (0.7, 2)
    assert (stats["eval loss r=4"].best, stats["eval loss r=4"].last) == (1.5, 1.7)


def test_runs_json_and_where(three, cli):
    out = cli("runs", "--runs-dir", three, "--json", check=True)
    data = json.loads(out.stdout)
    assert [d["name"] for d in data["runs"]] == ["a", "b", "c"]
    assert data["differing_keys"] == ["train.r_mean", "train.k"]
    assert data["runs"][2]["config"]["train.k"] == 4 and data["runs"][2]["state"] == "failed"
    assert data["runs"][1]["differs"] == {"train.r_mean": 16, "train.k": 2}
    out = cli("runs", "--runs-dir", three, "--json", "--where", "r_mean=16", "--where", "state=finished", check=True)
    assert [d["name"] for d in json.loads(out.stdout)["runs"]] == ["b"]
    out = cli("runs", "--runs-dir", three, "--where", "k=4", check=True)
    lines = out.stdout.splitlines()
    assert lines[0].split()[-1] == "AGE" and [line.split()[0] for line in lines[1:]] == ["c"]  # one run: nothing differs
    out = cli("runs", "--runs-dir", three, "--where", "r_mean>1")  # the table's columns: those that differ among a, b, c
    assert out.stdout.splitlines()[0].split()[-2:] == ["R_MEAN", "K"]
    before = sorted(p.name for p in three.rglob("*"))
    out = cli("runs", "--runs-dir", three, "--where", "bogus=1")
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr
    assert len(out.stderr.splitlines()) == 1 and sorted(p.name for p in three.rglob("*")) == before
