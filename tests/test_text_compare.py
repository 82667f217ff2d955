"""`recurlab compare`: four tiny text runs on one corpus, their sweeps in one table."""

from __future__ import annotations

import csv
import json

from recurlab.text.synth import write_corpus

TINY = ["model.n_embd=32", "model.n_head=2", "model.block_size=32", "data.seq_len=32", "data.tokenizer_vocab=320",
        "data.eval_examples=8", "train.batch_size=8", "train.max_steps=6", "train.eval_every=6",
        "train.checkpoint_every=6", "train.warmup_steps=1", "train.r_mean=4", "train.k=2", "hardware.device=cpu",
        "hardware.dtype=float32", "hardware.threads=1"]


def test_compare_trains_four_models_and_writes_one_table(cli, runs_dir, tmp_path):
    write_corpus(tmp_path / "corpus", n_bytes=60_000, files=1)
    # an earlier comparison's table stays as it is: this one is written beside it as compare-2.*
    (runs_dir / "compare.csv").write_text("r,loss_latent\n1,9.9\n")
    (runs_dir / "compare.json").write_text('{"earlier": true}\n')
    res = cli("compare", "--profile", "compare", f"data.name={tmp_path / 'corpus'}", f"data.cache_dir={tmp_path / 'cache'}",
              *TINY, "--r", "1,4", "--name", "cmp", "--runs-dir", runs_dir, timeout=300, check=True)
    assert "loss_latent" in res.stdout and "bpb_matched" in res.stdout
    assert (runs_dir / "compare.csv").read_text() == "r,loss_latent\n1,9.9\n"
    assert json.loads((runs_dir / "compare.json").read_text()) == {"earlier": True}
    assert f"wrote {runs_dir / 'compare-2.csv'} and {runs_dir / 'compare-2.json'}" in res.stdout
    rows = list(csv.DictReader((runs_dir / "compare-2.csv").open()))
    assert [row["r"] for row in rows] == ["1", "4"]
    table = json.loads((runs_dir / "compare-2.json").read_text())
    assert set(table["runs"].values()) == {"cmp-latent", "cmp-token", "cmp-fixed", "cmp-matched"}
    for name in table["runs"].values():
        assert json.loads((runs_dir / name / "status.json").read_text())["state"] == "finished"
    # same data and token budget; about the same parameters (the recurrent adapter aside), more for matched compute
    assert len(set(table["tokens"].values())) == 1
    p = table["params"]
    assert abs(p["recurrent"] - p["fixed_depth"]) < 0.05 * p["recurrent"] < p["fixed_depth_matched"]  # the adapter differs
    # a fixed-depth model does not depend on r; every cell is a real loss
    assert rows[0]["loss_fixed"] == rows[1]["loss_fixed"]
    assert all(float(row[c]) > 0 for row in rows for c in row if c != "r")


def test_compare_without_a_corpus_is_one_line_error(cli, runs_dir):
    res = cli("compare", "--profile", "compare", "--runs-dir", runs_dir)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "data.name" in res.stderr
