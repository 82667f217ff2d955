"""`recurlab export RUN OUT_DIR`: a trained run written in Huginn's folder format and opened again with
--model gives identical logits and the same greedy tokens; a non-empty OUT_DIR is refused untouched."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors import safe_open

from conftest import run_cli
from recurlab.config import RunConfig
from recurlab.errors import ModelFormatError


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    home = tmp_path_factory.mktemp("export")
    runs = home / "runs"
    run_cli("train", "--profile", "tiny", "--runs-dir", runs, "--name", "ex", "--foreground",
            "train.max_steps=10", "train.checkpoint_every=10", "model.qk_bias=true", cwd=home, timeout=300, check=True)
    res = run_cli("export", "ex", home / "hf", "--runs-dir", runs, cwd=home, timeout=300, check=True)
    assert "wrote" in res.stdout and "sqrt(n_embd)" in res.stderr  # the tiny profile keeps embed_scale 1
    return home, runs, home / "hf"


def test_round_trip_gives_identical_logits(exported):
    from recurlab.engine import open_model
    from recurlab.engine.loading import family_of

    home, runs, out = exported
    assert family_of(out).name == "huginn"
    run = open_model(runs / "ex", device="cpu")
    model, tok, cfg = run.model, run.tokenizer, run.cfg
    back = open_model(out, device="cpu")
    back, back_tok, back_cfg = back.model, back.tokenizer, back.cfg
    assert back_cfg.model.qk_bias and back_cfg.train.r_mean == cfg.train.r_mean
    ids = [tok.bos_id] + tok.encode("12+34=")
    assert back_tok.encode("<bos>12+34=") == ids  # the character vocabulary survives as tokenizer.json
    x = torch.tensor([ids])
    with torch.no_grad():
        for r in (1, 4, 7):
            assert torch.equal(model(x, n_grad=r, init_scale=0).logits, back(x, n_grad=r, init_scale=0).logits)
        # the random start is the same definition too (std and embedding scale travel in init_values)
        g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        assert torch.equal(model(x, n_grad=2, generator=g1).logits, back(x, n_grad=2, generator=g2).logits)


def test_layout_is_huginns(exported):
    _, _, out = exported
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "huginn_raven" and cfg["tie_embeddings"] and cfg["n_layers_in_recurrent_block"] == 1
    with safe_open(str(out / "model.safetensors"), framework="pt") as f:
        names = set(f.keys())
        assert f.get_slice("transformer.core_block.0.attn.qk_bias").get_shape() == [2, 1, 2, 16]
        assert torch.equal(f.get_tensor("lm_head.weight"), f.get_tensor("transformer.wte.weight"))
    assert {"freqs_cis", "transformer.adapter.weight", "transformer.ln_f.weight"} <= names
    assert (out / "tokenizer.json").is_file() and (out / "special_tokens_map.json").is_file()


def test_generate_from_the_export_equals_the_run(exported):
    home, runs, out = exported
    args = ["--r", 4, "--init-scale", 0, "--json", "--max-new-tokens", 6, "--runs-dir", runs]
    a = json.loads(run_cli("generate", "ex", "--prompt", "12+34=", *args, cwd=home, check=True).stdout)
    b = json.loads(run_cli("generate", "--model", out, "--prompt", "<bos>12+34=", *args, cwd=home, check=True).stdout)
    assert a["generated_ids"] == b["generated_ids"]


def test_non_empty_out_dir_is_refused_untouched(exported):
    home, runs, out = exported
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    res = run_cli("export", "ex", out, "--runs-dir", runs, cwd=home)
    assert res.returncode == 2 and res.stderr.startswith("error:") and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "not empty" in res.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_layouts_outside_huginns_format_are_refused():
    from recurlab.families.export import check_exportable, reference_note

    cfg = RunConfig()
    check_exportable(cfg)
    assert reference_note(cfg) is not None
    cfg.model.embed_scale = math.sqrt(cfg.model.n_embd)
    assert reference_note(cfg) is None
    for key, value in (("block", "prenorm"), ("tie_head", False), ("n_kv_head", 2), ("arch", "fixed_depth")):
        bad = RunConfig()
        setattr(bad.model, key, value)
        with pytest.raises(ModelFormatError):
            check_exportable(bad)
