"""Retrofit training: a small Llama-format folder made here is cut into prelude, core and coda, given an
adapter, trained a few steps on CPU with falling loss, stopped, resumed and swept over r."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from recurlab.config import ConfigError
from recurlab.lifecycle import resolve_profile
from recurlab.families.writers import write_random_llama
from recurlab.rundir import RunDir, pid_alive

D, H, KV, MLP, V = 32, 4, 2, 48, 300


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    folder = write_random_llama(tmp_path_factory.mktemp("llama") / "tiny-llama", hidden=D, layers=5, heads=H,
                                kv_heads=KV, mlp=MLP, vocab=V, seed=2)
    raw = {}
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    for shard in sorted(set(index["weight_map"].values())):
        with safe_open(str(folder / shard), framework="pt") as f:
            raw.update({k: f.get_tensor(k).double() for k in f.keys()})
    return folder, raw


def rms(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rot_half(x, base=10000.0):
    T, hd = x.shape[1], x.shape[-1]
    theta = base ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * theta
    cos, sin = ang.cos()[None, :, None], ang.sin()[None, :, None]
    a, b = x[..., : hd // 2], x[..., hd // 2:]
    return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)


def llama_layer(W, i, x):
    """Layer i of the source Llama, from its own tensor names."""
    p, (B, T, _), hd = f"model.layers.{i}", x.shape, D // H
    h = rms(x, W[f"{p}.input_layernorm.weight"])
    q = rot_half((h @ W[f"{p}.self_attn.q_proj.weight"].T).reshape(B, T, H, hd))
    k = rot_half((h @ W[f"{p}.self_attn.k_proj.weight"].T).reshape(B, T, KV, hd))
    v = (h @ W[f"{p}.self_attn.v_proj.weight"].T).reshape(B, T, KV, hd)
    k, v = k[:, :, torch.arange(H) // (H // KV)], v[:, :, torch.arange(H) // (H // KV)]
    s = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(hd)
    s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    y = torch.einsum("bhqk,bkhd->bqhd", s.softmax(-1), v).reshape(B, T, D)
    x = x + y @ W[f"{p}.self_attn.o_proj.weight"].T
    h = rms(x, W[f"{p}.post_attention_layernorm.weight"])
    return x + (F.silu(h @ W[f"{p}.mlp.gate_proj.weight"].T) * (h @ W[f"{p}.mlp.up_proj.weight"].T)) @ W[f"{p}.mlp.down_proj.weight"].T


def retrofit_by_hand(W, adapter, idx, r):
    """Prelude = layer 0, core = layers 1-2 looped r times through the adapter, coda = layer 3."""
    e = llama_layer(W, 0, W["model.embed_tokens.weight"][idx])
    s = torch.zeros_like(e)
    for _ in range(r):
        s = torch.cat([s, e], dim=-1) @ adapter.T
        s = llama_layer(W, 2, llama_layer(W, 1, s))
    return rms(llama_layer(W, 3, s), W["model.norm.weight"]) @ W["lm_head.weight"].T


def test_profile_takes_its_shape_from_the_llama_folder(llama, tmp_path):
    folder, _ = llama
    cfg = resolve_profile("retrofit-tiny", [f"model.init_from={folder}", f"data.name={tmp_path}/t.txt"])
    m = cfg.model
    assert (m.n_prelude, m.n_core, m.n_coda, m.n_embd, m.n_head, m.kv_heads, m.vocab_size) == (1, 2, 1, D, H, KV, V)
    assert (m.block, m.rotary, m.injection, m.coda_norm, m.tie_head) == ("prenorm", "half", "adapter", False, False)
    assert cfg.data.tokenizer == str((folder / "tokenizer.json").resolve())
    with pytest.raises(ConfigError, match="layer 9 does not exist"):
        resolve_profile("retrofit-tiny", [f"model.init_from={folder}", "model.layers=0-1,2-7,8-9", "data.name=x"])
    with pytest.raises(ConfigError, match="model.layers"):
        resolve_profile("retrofit-tiny", [f"model.init_from={folder}", "model.layers=0-1,2", "data.name=x"])


def test_converted_model_is_the_llama_layers_plus_an_adapter(llama, tmp_path):
    from recurlab.families.retrofit import init_from_llama
    from recurlab.model import RecurrentLM

    folder, W = llama
    cfg = resolve_profile("retrofit-tiny", [f"model.init_from={folder}", f"data.name={tmp_path}/t.txt"])
    torch.manual_seed(0)
    model = RecurrentLM(cfg.model)
    adapter = model.transformer.adapter.weight.detach().clone()
    init_from_llama(model, cfg.model)
    assert torch.equal(model.transformer.adapter.weight, adapter)  # not in a Llama checkpoint: stays fresh
    idx = torch.tensor([[3, 17, 42, 99, 7, 250, 11]])
    for r in (1, 3):
        with torch.no_grad():
            got = model(idx, n_grad=r, init_scale=0).logits
        want = retrofit_by_hand(W, adapter.double(), idx, r)
        assert (got - want).abs().max() <= 2e-4 * want.abs().max()


def corpus(folder):
    """Ten files of one paragraph each (a document per paragraph: one goes to validation)."""
    folder.mkdir()
    words = "the model loops one block over a latent state and thinks longer when it runs more steps".split()
    for k in range(10):
        lines = [" ".join(words[(i * 7 + j) % len(words)] for j in range(12)) + f" {i} + {i + 3} = {2 * i + 3}."
                 for i in range(40 * k, 40 * (k + 1))]
        (folder / f"part{k}.txt").write_text("\n".join(lines))
    return folder


def wait(pred, what, patience=240.0):
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_retrofit_trains_resumes_and_sweeps(llama, cli, runs_dir, tmp_path):
    folder, _ = llama
    text = corpus(tmp_path / "corpus")
    common = ["--runs-dir", runs_dir]
    cli("train", "--profile", "retrofit-tiny", *common, "--name", "rf", f"model.init_from={folder}",
        f"data.name={text}", "train.max_steps=400", check=True)
    run = RunDir(runs_dir / "rf")
    wait(lambda: run.latest_checkpoint() is not None and run.latest_checkpoint().step >= 20, "two checkpoints")
    cli("stop", "rf", *common, check=True)
    stopped = run.read_status()["step"]
    wait(lambda: not pid_alive(run.read_status().get("pid") or 0), "the worker to exit")
    losses = [m["loss"] for m in run.read_metrics("train")]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5, losses  # it learns from the Llama start
    # the curriculum raised the mean recurrence from 1 towards 4
    cli("resume", "rf", *common, check=True)
    wait(lambda: (run.latest_checkpoint().step > stopped) and run.read_status().get("state") == "running", "a checkpoint after resuming")
    cli("stop", "rf", *common, check=True)
    wait(lambda: not pid_alive(run.read_status().get("pid") or 0), "the resumed worker to exit")
    steps = [m["step"] for m in run.read_metrics("train")]
    assert steps == sorted(set(steps)) and steps[0] <= 2 and steps[-1] > stopped
    res = cli("sweep", "rf", "--r", "1,2,4", *common, check=True)
    assert "r=4" in res.stderr and "wrote" in res.stdout
    res = cli("generate", "rf", "--prompt", "the model", "--r", "4", "--max-new-tokens", "4", "--json", *common, check=True)
    assert len(json.loads(res.stdout)["generated_ids"][0]) >= 1
