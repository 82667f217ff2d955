"""Ouro and retrofitted-recurrence folders: outputs checked against plain torch computed from the raw tensors.

The expected values never call recurlab's model code: the blocks, the rotate-half rotary (as a
complex multiplication), grouped-query attention (each query head reads key head i // group, an
explicit softmax under a causal mask) and the whole loops are written out from the checkpoint's
tensors as the formats document them.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from recurlab.checkpoint import model_tensors, save_checkpoint
from recurlab.config import RunConfig, to_yaml, validate
from recurlab.engine import GenerateOptions, OpenedModel, open_model
from recurlab.engine.loading import FAMILIES, family_of
from recurlab.errors import ModelFormatError
from recurlab.families.writers import write_random_huginn, write_random_llama, write_random_ouro, write_random_retrofit
from recurlab.folders import MODEL_TYPES
from recurlab.rundir import RunDir
from test_engine_utils import random_model, tiny_config

D, H, KV, MLP, V = 32, 4, 2, 48, 300
PROMPT = "The capital of Westphalia is"


def open_parts(path):
    """(model, tokenizer, RunConfig) of a folder opened through the engine's door, on the CPU."""
    m = open_model(path, device="cpu")
    return m.model, m.tokenizer, m.cfg


def family_name(path) -> str:
    return family_of(Path(path)).name


def read_raw(folder):
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    out = {}
    for shard in sorted(set(index["weight_map"].values())):
        with safe_open(str(folder / shard), framework="pt") as f:
            for k in f.keys():
                out[k] = f.get_tensor(k).double()
    return out


def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half_def(x, base):
    """Channel i pairs with channel i + D/2 as the real and imaginary part of a complex number,
    multiplied by e^{i pos theta_i}, theta_i = base^(-2i/D)."""
    T, hd = x.shape[1], x.shape[-1]
    theta = base ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    phase = torch.polar(torch.ones(T, hd // 2, dtype=torch.float64), torch.arange(T, dtype=torch.float64)[:, None] * theta)
    z = torch.complex(x[..., : hd // 2], x[..., hd // 2:]) * phase[None, :, None, :]
    return torch.cat([z.real, z.imag], dim=-1)


def gqa_attention(q, k, v):
    """q (B,T,H,hd), k/v (B,T,KV,hd): query head i reads key/value head i // (H / KV)."""
    B, T, heads, hd = q.shape
    group = heads // k.shape[2]
    k = k[:, :, torch.arange(heads) // group]
    v = v[:, :, torch.arange(heads) // group]
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(hd)
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).reshape(B, T, heads * hd)


def swiglu(x, gate, up, down):
    return (F.silu(x @ gate.T) * (x @ up.T)) @ down.T


# ---- Ouro ----------------------------------------------------------------------------------------

OURO = dict(hidden=D, layers=2, heads=H, kv_heads=KV, mlp=MLP, vocab=V, steps=4)


def ouro_layer(W, p, x, base=1_000_000.0, eps=1e-6, kv=KV):
    B, T, _ = x.shape
    hd = D // H
    h = rms(x, W[f"{p}.input_layernorm.weight"], eps)
    q = (h @ W[f"{p}.self_attn.q_proj.weight"].T).reshape(B, T, H, hd)
    k = (h @ W[f"{p}.self_attn.k_proj.weight"].T).reshape(B, T, kv, hd)
    v = (h @ W[f"{p}.self_attn.v_proj.weight"].T).reshape(B, T, kv, hd)
    y = gqa_attention(rotate_half_def(q, base), rotate_half_def(k, base), v) @ W[f"{p}.self_attn.o_proj.weight"].T
    x = x + rms(y, W[f"{p}.input_layernorm_2.weight"], eps)
    h = rms(x, W[f"{p}.post_attention_layernorm.weight"], eps)
    m = swiglu(h, W[f"{p}.mlp.gate_proj.weight"], W[f"{p}.mlp.up_proj.weight"], W[f"{p}.mlp.down_proj.weight"])
    return x + rms(m, W[f"{p}.post_attention_layernorm_2.weight"], eps)


def ouro_states(W, idx, steps, layers=2, kv=KV):
    """The normalized state after every loop step (the reference's hidden_states_list)."""
    h = W["model.embed_tokens.weight"][idx]
    out = []
    for _ in range(steps):
        for i in range(layers):
            h = ouro_layer(W, f"model.layers.{i}", h, kv=kv)
        h = rms(h, W["model.norm.weight"], 1e-6)
        out.append(h)
    return out


def ouro_logits(W, idx, steps, kv=KV):
    return ouro_states(W, idx, steps, kv=kv)[-1] @ W["lm_head.weight"].T


def close(a, b, tol=2e-4):
    b = b.to(a.dtype)
    return (a - b).abs().max().item() <= tol * max(1.0, b.abs().max().item())


@pytest.fixture(scope="module")
def ouro_folder(tmp_path_factory):
    return write_random_ouro(tmp_path_factory.mktemp("ouro") / "tiny", seed=5, **OURO)


@pytest.fixture(scope="module")
def ouro(ouro_folder):
    return open_parts(ouro_folder), read_raw(ouro_folder)


def test_ouro_config_maps_onto_the_description(ouro_folder, ouro):
    (model, tok, cfg), _ = ouro
    m = cfg.model
    assert family_name(ouro_folder) == "ouro"
    assert (m.n_prelude, m.n_core, m.n_coda, m.n_head, m.kv_heads) == (0, 2, 0, H, KV)
    assert (m.block, m.rotary, m.injection, m.state_init) == ("peri", "half", "none", "embedding")
    assert m.step_norm and not m.coda_norm and not m.final_norm and not m.tie_head and m.exit_gate
    assert m.rope_base == 1_000_000.0 and cfg.train.r_mean == 4
    assert model.lm_head.weight is not model.transformer.wte.weight
    assert "adapter" not in model.transformer


def test_ouro_one_block_matches_hand_computation(ouro):
    (model, _, _), W = ouro
    x = torch.randn(2, 7, D, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = model.transformer.core_block[1](x, model.rope(torch.arange(7)))
    assert close(got, ouro_layer(W, "model.layers.1", x.double()))


@pytest.mark.parametrize("r", [1, 2, 4, 6])
def test_ouro_whole_forward_matches_hand_computation(ouro, r):
    (model, tok, _), W = ouro
    idx = torch.tensor([tok.encode(PROMPT)])
    with torch.no_grad():
        got = model(idx, n_grad=r).logits
    assert close(got, ouro_logits(W, idx, r))


def test_ouro_steps_change_the_output(ouro):
    _, W = ouro
    idx = torch.tensor([[5, 17, 42, 99, 7]])
    assert not close(ouro_logits(W, idx, 1), ouro_logits(W, idx, 4), 1e-3)


def test_ouro_cached_greedy_equals_uncached_forward(ouro):
    from recurlab.engine import Engine, GenerateOptions

    (model, tok, _), W = ouro
    seq = torch.tensor([tok.encode(PROMPT)])
    for _ in range(6):
        seq = torch.cat([seq, ouro_logits(W, seq, 4)[:, -1].argmax(-1, keepdim=True)], dim=1)
    want = seq[0, -6:].tolist()
    res = Engine(model, tok).generate(PROMPT, GenerateOptions(r=4, max_new_tokens=6, temperature=0.0, stop_ids=[]))
    assert res.token_ids == want


# ---- retrofitted recurrence --------------------------------------------------------------------

RETRO = dict(hidden=D, heads=H, kv_heads=KV, mlp=MLP, vocab=V, prelude=1, core=2, coda=1)


def llama_block(W, p, x, base=10000.0, eps=1e-5):
    B, T, _ = x.shape
    hd = D // H
    h = rms(x, W[f"{p}.norm_1.weight"], eps)
    q, k, v = (h @ W[f"{p}.attn.Wqkv.weight"].T).split([H * hd, KV * hd, KV * hd], dim=-1)
    y = gqa_attention(rotate_half_def(q.reshape(B, T, H, hd), base), rotate_half_def(k.reshape(B, T, KV, hd), base),
                      v.reshape(B, T, KV, hd))
    x = x + y @ W[f"{p}.attn.proj.weight"].T
    gate, up = (rms(x, W[f"{p}.norm_2.weight"], eps) @ W[f"{p}.mlp.fc.weight"].T).chunk(2, dim=-1)
    return x + (F.silu(gate) * up) @ W[f"{p}.mlp.proj.weight"].T


def retro_logits(W, idx, r):
    e = W["transformer.wte.weight"][idx]
    e = llama_block(W, "transformer.prelude.0", e)
    s = torch.zeros_like(e)
    for _ in range(r):
        s = torch.cat([s, e], dim=-1) @ W["transformer.adapter.weight"].T
        for j in range(2):
            s = llama_block(W, f"transformer.core_block.{j}", s)
    y = llama_block(W, "transformer.coda.0", s)  # no norm before the coda
    return rms(y, W["transformer.ln_f.weight"], 1e-5) @ W["lm_head.weight"].T


@pytest.fixture(scope="module")
def retro_folder(tmp_path_factory):
    return write_random_retrofit(tmp_path_factory.mktemp("retro") / "tiny", seed=7, **RETRO)


@pytest.fixture(scope="module")
def retro(retro_folder):
    return open_parts(retro_folder), read_raw(retro_folder)


def test_retrofit_is_told_from_huginn_by_its_tensors(retro_folder, tmp_path):
    assert json.loads((retro_folder / "config.json").read_text())["model_type"] == "huginn_raven"
    assert family_name(retro_folder) == "retrofit"
    huginn = write_random_huginn(tmp_path / "h", n_embd=32, n_heads=4, vocab_size=300, tokenizer_vocab=290)
    assert family_name(huginn) == "huginn"


def test_retrofit_config_maps_onto_the_description(retro):
    (model, _, cfg), _ = retro
    m = cfg.model
    assert (m.block, m.rotary, m.injection, m.state_init) == ("prenorm", "half", "adapter", "random")
    assert not m.step_norm and not m.coda_norm and m.final_norm and not m.tie_head
    assert (m.n_prelude, m.n_core, m.n_coda, m.kv_heads, m.embed_scale) == (1, 2, 1, KV, 1.0)
    assert m.init_scale == pytest.approx(math.sqrt(2 / (5 * 5280)))
    assert cfg.train.r_mean == 32


def test_retrofit_one_block_matches_hand_computation(retro):
    (model, _, _), W = retro
    x = torch.randn(2, 7, D, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = model.transformer.core_block[0](x, model.rope(torch.arange(7)))
    assert close(got, llama_block(W, "transformer.core_block.0", x.double()))


@pytest.mark.parametrize("r", [1, 3, 8])
def test_retrofit_whole_forward_matches_hand_computation(retro, r):
    (model, tok, _), W = retro
    idx = torch.tensor([tok.encode(PROMPT)])
    with torch.no_grad():
        got = model(idx, n_grad=r, init_scale=0).logits
    assert close(got, retro_logits(W, idx, r))


def test_retrofit_cached_greedy_equals_uncached_forward(retro):
    from recurlab.engine import Engine, GenerateOptions

    (model, tok, _), W = retro
    seq = torch.tensor([tok.encode(PROMPT)])
    for _ in range(6):
        seq = torch.cat([seq, retro_logits(W, seq, 5)[:, -1].argmax(-1, keepdim=True)], dim=1)
    want = seq[0, -6:].tolist()
    opts = GenerateOptions(r=5, max_new_tokens=6, temperature=0.0, init_scale=0.0, stop_ids=[])
    assert Engine(model, tok).generate(PROMPT, opts).token_ids == want


# ---- errors ---------------------------------------------------------------------------------------

def one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_ouro_sliding_window_is_refused(ouro_folder, tmp_path):
    bad = shutil.copytree(ouro_folder, tmp_path / "swa")
    cfg = json.loads((bad / "config.json").read_text())
    cfg.update(use_sliding_window=True, layer_types=["full_attention", "sliding_attention"])
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFormatError) as exc:
        open_parts(bad)
    assert "sliding-window" in one_line(exc)


def test_ouro_shape_mismatch_and_unknown_tensor_are_reported(ouro_folder, tmp_path):
    bad = shutil.copytree(ouro_folder, tmp_path / "shape")
    cfg = json.loads((bad / "config.json").read_text())
    cfg["num_key_value_heads"] = 4
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFormatError) as exc:
        open_parts(bad)
    assert "k_proj" in one_line(exc) and "[16, 32]" in one_line(exc)
    cfg["num_key_value_heads"] = 2
    cfg["num_hidden_layers"] = 1
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFormatError) as exc:
        open_parts(bad)
    assert "model.layers.1" in one_line(exc) and "does not know" in one_line(exc)


def test_plain_llama_folder_gets_the_conversion_command(tmp_path):
    folder = write_random_llama(tmp_path / "llama", hidden=D, layers=4, heads=H, kv_heads=KV, mlp=MLP, vocab=V)
    with pytest.raises(ModelFormatError) as exc:
        open_parts(folder)
    assert "retrofit" in one_line(exc) and "model.init_from" in one_line(exc)


# ---- Ouro's exit gate as an exit criterion -------------------------------------------------------

def ref_gate_exit(W, idx, steps, threshold):
    """The reference's exit rule at every position: (exit step 1-based (T,), logits at that step (T, V), pdf (steps, T))."""
    states = ouro_states(W, idx, steps)
    lam = torch.stack([torch.sigmoid((h[0] @ W["model.early_exit_gate.weight"].T).squeeze(-1) + W["model.early_exit_gate.bias"])
                       for h in states])  # (steps, T)
    remaining, pdf = torch.ones(lam.shape[1], dtype=lam.dtype), []
    for k in range(steps):
        pdf.append(lam[k] * remaining if k < steps - 1 else remaining)
        remaining = remaining * (1 - lam[k])
    pdf = torch.stack(pdf)
    reached = pdf.cumsum(0) >= threshold
    step = torch.where(reached.any(0), reached.float().argmax(0), torch.full_like(reached[0], steps - 1, dtype=torch.long))
    logits = torch.stack([states[int(k)][0, t] for t, k in enumerate(step)]) @ W["lm_head.weight"].T
    return step + 1, logits, pdf


@pytest.fixture(scope="module")
def ouro_gated(tmp_path_factory):
    folder = write_random_ouro(tmp_path_factory.mktemp("ouro-gate") / "tiny", seed=11, gate_bias=-1.0, **OURO)
    return open_parts(folder), read_raw(folder)


def test_gate_exit_skips_steps_and_matches_the_reference_rule(ouro_gated):
    from recurlab.engine import Engine, GenerateOptions

    (model, tok, _), W = ouro_gated
    engine = Engine(model, tok)
    prompts = ["12 + 34 = 46", "The quick brown fox", "def add(a, b):", "Question: what is"]
    seen = set()
    for prompt in prompts:
        ids = torch.tensor([tok.encode(prompt)])
        want_step, want_logits, _ = ref_gate_exit(W, ids, 4, 0.5)
        res = engine.generate(prompt, GenerateOptions(r=4, max_new_tokens=1, exit="gate:0.5", stop_ids=[]))
        # the first generated token comes from the last prompt position's pass: same exit step, same token
        assert res.iterations[0][0] == int(want_step[-1])
        assert res.token_ids[0] == int(want_logits[-1].argmax())
        seen.add(res.iterations[0][0])
    assert len(seen) > 1 and min(seen) < 4  # the gate really stops early, and not always at the same step


def test_gate_threshold_one_runs_every_step(ouro_gated):
    from recurlab.engine import Engine, GenerateOptions

    (model, tok, _), _ = ouro_gated
    res = Engine(model, tok).generate("12 + 34", GenerateOptions(r=4, max_new_tokens=5, exit="gate:1", stop_ids=[]))
    full = Engine(model, tok).generate("12 + 34", GenerateOptions(r=4, max_new_tokens=5, stop_ids=[]))
    assert res.token_ids == full.token_ids


def test_trace_shows_the_gate_exit_distribution(ouro_gated):
    from recurlab.engine import latent_trace

    (model, tok, _), W = ouro_gated
    prompt = "12 + 34 ="
    trace = latent_trace(model, tok, prompt, r=4, criterion="gate:0.5")
    step, _, pdf = ref_gate_exit(W, torch.tensor([tok.encode(prompt)]), 4, 0.5)
    for t, token in enumerate(trace["tokens"]):
        assert sum(token["exit_pdf"]) == pytest.approx(1.0, abs=1e-5)
        assert token["exit_pdf"] == pytest.approx(pdf[:, t].tolist(), abs=1e-5)
        assert token["exit_iteration"] == int(step[t])


def test_gate_exit_needs_a_gate(retro):
    from recurlab.engine import Engine, GenerateOptions
    from recurlab.errors import InferenceError

    (model, tok, _), _ = retro
    with pytest.raises(InferenceError) as exc:
        Engine(model, tok).generate("12", GenerateOptions(r=4, exit="gate:0.9"))
    assert "exit gate" in one_line(exc)
    with pytest.raises(InferenceError):
        GenerateOptions(r=4, exit="gate:1.5").validate()


def test_parallel_sampler_strict_rule_equals_sequential_on_both_families(ouro, retro):
    """The parallel sampler needs nothing per family: with its exact rule it reproduces sequential
    decoding on Ouro (start at the embedding) and on grouped-query retrofitted models."""
    from recurlab.engine import Engine, GenerateOptions

    strict = "parallel:headway=1,noise=0,smoothing=0,freeze=iterations,kv=aligned"
    for (model, tok, _), _ in (ouro, retro):
        engine = Engine(model, tok)
        opts = dict(r=4, max_new_tokens=6, temperature=0.0, init_scale=0.0, stop_ids=[])
        seq = engine.generate("Question: what is", GenerateOptions(**opts)).token_ids
        par = engine.generate("Question: what is", GenerateOptions(**opts, sampler=strict)).token_ids
        assert par == seq


def test_ouro_with_plain_multi_head_attention(tmp_path):
    """Ouro-1.4B has as many key/value heads as query heads: the rotate-half path on q and k together."""
    folder = write_random_ouro(tmp_path / "mha", seed=9, **{**OURO, "kv_heads": H})
    (model, tok, cfg), W = open_parts(folder), read_raw(folder)
    assert cfg.model.kv_heads == H and cfg.model.n_kv_head == 0
    idx = torch.tensor([tok.encode(PROMPT)])
    with torch.no_grad():
        assert close(model(idx, n_grad=3).logits, ouro_logits(W, idx, 3, kv=H))


def test_a_folder_of_each_family_opens_through_the_one_interface(tmp_path):
    """Exactly one entry of FAMILIES claims each folder, and its `open` gives an OpenedModel whose
    model gives logits over the vocabulary and whose engine generates."""
    model, tok = random_model(seed=2)
    cfg = RunConfig(profile="test", model=tiny_config())
    validate(cfg)
    run = RunDir.create(tmp_path / "runs", "tiny", to_yaml(cfg))
    run.vocab_path.write_text(tok.to_json())
    save_checkpoint(run, 1, model_tensors(model), None, {"tokens": 0})
    folders = {
        "run": run.path,
        "huginn": write_random_huginn(tmp_path / "huginn", n_embd=D, n_heads=H, vocab_size=V, tokenizer_vocab=290),
        "ouro": write_random_ouro(tmp_path / "ouro", seed=5, **OURO),
        "retrofit": write_random_retrofit(tmp_path / "retro", seed=7, **RETRO),
    }
    assert set(MODEL_TYPES) == {f.model_type for f in FAMILIES if f.model_type}  # the torch-free check knows them all
    for name, path in folders.items():
        assert [f.name for f in FAMILIES if f.claims(path)] == [name]
        opened = family_of(path).open(path, "cpu")
        assert isinstance(opened, OpenedModel) and opened.kind == name and (opened.run is not None) == (name == "run")
        ids = opened.engine.encode("12+34=")
        logits = opened.model(torch.tensor([ids]), n_no_grad=2, n_grad=0, init_scale=0.0).logits
        assert logits.shape == (1, len(ids), opened.cfg.model.vocab_size), name
        res = opened.engine.generate("12+34=", GenerateOptions(r=2, max_new_tokens=3, temperature=0.0, stop_ids=()))
        assert res.n_tokens == 3 and len(res.generated_ids[0]) == 3, name
