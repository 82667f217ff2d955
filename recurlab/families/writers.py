"""Write random checkpoints in the Ouro, retrofitted-recurrence and Llama folder formats, at any shape.

    from recurlab.families.writers import write_random_ouro, write_random_retrofit, write_random_llama
    write_random_ouro("tmp/ouro", hidden=64, layers=2, heads=4, kv_heads=2, steps=4, seed=0)
    write_random_retrofit("tmp/rr", hidden=64, heads=4, kv_heads=2, prelude=1, core=2, coda=1)
    write_random_llama("tmp/llama", hidden=64, layers=6, heads=4, kv_heads=2)

Each folder gets a config.json with the format's keys, safetensors with its documented tensor names
and shapes (split into about three shards with model.safetensors.index.json), and a tokenizer.json
from a small byte-level BPE. Norm weights are drawn around 1 (not all ones) and the exit gate's
bias is drawn too, so a test notices a norm or the gate applied in the wrong place. Used by the
tests and by the gate-exit benchmark (recurlab.bench.gate).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from recurlab.huginn.writer import CORPUS
from recurlab.text.bpe import BPETokenizer

OURO_1_4B = dict(hidden=2048, layers=24, heads=16, kv_heads=16, mlp=5632, vocab=49152, steps=4)


def _draw(kind: str, shape: tuple, std: float, gen: torch.Generator) -> torch.Tensor:
    if kind == "norm":
        return 1.0 + 0.2 * torch.randn(shape, generator=gen)
    if kind == "bias":
        return 0.5 * torch.randn(shape, generator=gen)
    return std * torch.randn(shape, generator=gen)


def _write_tensors(out: Path, plan: list[tuple[str, tuple, str]], std: float, seed: int, shards: int = 3) -> None:
    gen = torch.Generator().manual_seed(seed)
    tensors = [(name, _draw(kind, shape, std, gen)) for name, shape, kind in plan]
    per = max(1, math.ceil(len(tensors) / shards))
    groups = [tensors[i:i + per] for i in range(0, len(tensors), per)]
    weight_map, total = {}, 0
    for k, group in enumerate(groups):
        fname = f"model-{k + 1:05d}-of-{len(groups):05d}.safetensors"
        save_file({n: t.contiguous() for n, t in group}, str(out / fname), metadata={"format": "pt"})
        for n, t in group:
            weight_map[n] = fname
            total += t.numel() * t.element_size()
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def _tokenizer(out: Path, vocab: int) -> dict:
    tok = BPETokenizer.train(CORPUS * 4, vocab_size=min(vocab, 400))
    tok.save(out / "tokenizer.json")
    return {"bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id, "pad_token_id": tok.pad_id}


def _llama_layer(prefix: str, d: int, heads: int, kv: int, mlp: int, norms: tuple[str, ...]) -> list:
    hd = d // heads
    plan = [(f"{prefix}.self_attn.q_proj.weight", (heads * hd, d), "linear"),
            (f"{prefix}.self_attn.k_proj.weight", (kv * hd, d), "linear"),
            (f"{prefix}.self_attn.v_proj.weight", (kv * hd, d), "linear"),
            (f"{prefix}.self_attn.o_proj.weight", (d, heads * hd), "linear"),
            (f"{prefix}.mlp.gate_proj.weight", (mlp, d), "linear"),
            (f"{prefix}.mlp.up_proj.weight", (mlp, d), "linear"),
            (f"{prefix}.mlp.down_proj.weight", (d, mlp), "linear")]
    return plan + [(f"{prefix}.{n}.weight", (d,), "norm") for n in norms]


def write_random_ouro(path, hidden: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2, mlp: int = 96,
                      vocab: int = 300, steps: int = 4, rope_theta: float = 1_000_000.0, threshold: float = 1.0,
                      gate_bias: float = 0.0, seed: int = 0, max_positions: int = 256) -> Path:
    """`gate_bias` shifts the drawn exit-gate bias (positive: tokens tend to exit early)."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    norms = ("input_layernorm", "input_layernorm_2", "post_attention_layernorm", "post_attention_layernorm_2")
    plan = [("model.embed_tokens.weight", (vocab, hidden), "embed")]
    for i in range(layers):
        plan += _llama_layer(f"model.layers.{i}", hidden, heads, kv_heads, mlp, norms)
    plan += [("model.norm.weight", (hidden,), "norm"),
             ("model.early_exit_gate.weight", (1, hidden), "linear"),
             ("model.early_exit_gate.bias", (1,), "bias"),
             ("lm_head.weight", (vocab, hidden), "linear")]
    _write_tensors(out, plan, 1.0 / math.sqrt(hidden), seed)
    if gate_bias:
        _shift_gate_bias(out, gate_bias)
    ids = _tokenizer(out, vocab)
    config = {
        "architectures": ["OuroForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_ouro.OuroConfig", "AutoModelForCausalLM": "modeling_ouro.OuroForCausalLM"},
        "model_type": "ouro", "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "head_dim": hidden // heads, "intermediate_size": mlp, "vocab_size": vocab,
        "hidden_act": "silu", "rms_norm_eps": 1e-6, "rope_theta": rope_theta, "rope_scaling": None,
        "max_position_embeddings": max_positions, "tie_word_embeddings": False, "use_sliding_window": False,
        "layer_types": ["full_attention"] * layers, "total_ut_steps": steps, "early_exit_threshold": threshold,
        "torch_dtype": "float32", **ids,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def _shift_gate_bias(out: Path, shift: float) -> None:
    from safetensors.torch import load_file

    index = json.loads((out / "model.safetensors.index.json").read_text())
    shard = out / index["weight_map"]["model.early_exit_gate.bias"]
    tensors = load_file(str(shard))
    tensors["model.early_exit_gate.bias"] = tensors["model.early_exit_gate.bias"] + shift
    save_file(tensors, str(shard), metadata={"format": "pt"})


def write_random_retrofit(path, hidden: int = 64, heads: int = 4, kv_heads: int = 2, mlp: int = 96, vocab: int = 300,
                          prelude: int = 1, core: int = 2, coda: int = 1, rope_theta: float = 10000.0,
                          mean_recurrence: int = 32, seed: int = 0) -> Path:
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    hd = hidden // heads

    def block(prefix: str) -> list:
        return [(f"{prefix}.norm_1.weight", (hidden,), "norm"),
                (f"{prefix}.attn.Wqkv.weight", ((heads + 2 * kv_heads) * hd, hidden), "linear"),
                (f"{prefix}.attn.proj.weight", (hidden, hidden), "linear"),
                (f"{prefix}.norm_2.weight", (hidden,), "norm"),
                (f"{prefix}.mlp.fc.weight", (2 * mlp, hidden), "linear"),
                (f"{prefix}.mlp.proj.weight", (hidden, mlp), "linear")]

    plan = [("transformer.wte.weight", (vocab, hidden), "embed")]
    for i in range(prelude):
        plan += block(f"transformer.prelude.{i}")
    plan.append(("transformer.adapter.weight", (hidden, 2 * hidden), "linear"))
    for j in range(core):
        plan += block(f"transformer.core_block.{j}")
    for i in range(coda):
        plan += block(f"transformer.coda.{i}")
    plan += [("transformer.ln_f.weight", (hidden,), "norm"), ("lm_head.weight", (vocab, hidden), "linear")]
    _write_tensors(out, plan, 1.0 / math.sqrt(hidden), seed)
    ids = _tokenizer(out, vocab)
    config = {
        "architectures": ["RavenForCausalLM"],
        "auto_map": {"AutoConfig": "raven_config_minimal.RavenConfig", "AutoModelForCausalLM": "raven_modeling_minimal.RavenForCausalLM"},
        "model_type": "huginn_raven", "n_embd": hidden, "n_heads": heads, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "head_dim": hd, "intermediate_size": mlp, "vocab_size": vocab,
        "padded_vocab_size": vocab, "n_layers": prelude + core + coda, "n_layers_in_prelude": prelude,
        "n_layers_in_recurrent_block": core, "n_layers_in_coda": coda, "norm_eps": 1e-5, "rope_theta": rope_theta,
        "rope_base": 500000.0, "tie_embeddings": False, "qk_bias": False, "bias": False, "block_class_name": "SandwichBlock",
        "injection_type": "linear", "mean_recurrence": mean_recurrence, "mean_backprop_depth": 8,
        "max_position_embeddings": 256, "block_size": 256,
        "init_values": {"std": math.sqrt(2 / (5 * 5280)), "embed_scale": 1.0}, "torch_dtype": "float32", **ids,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def write_random_llama(path, hidden: int = 64, layers: int = 6, heads: int = 4, kv_heads: int = 2, mlp: int = 96,
                       vocab: int = 300, rope_theta: float = 10000.0, seed: int = 0) -> Path:
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    plan = [("model.embed_tokens.weight", (vocab, hidden), "embed")]
    for i in range(layers):
        plan += _llama_layer(f"model.layers.{i}", hidden, heads, kv_heads, mlp, ("input_layernorm", "post_attention_layernorm"))
    plan += [("model.norm.weight", (hidden,), "norm"), ("lm_head.weight", (vocab, hidden), "linear")]
    _write_tensors(out, plan, 1.0 / math.sqrt(hidden), seed)
    ids = _tokenizer(out, vocab)
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "intermediate_size": mlp, "vocab_size": vocab, "hidden_act": "silu", "rms_norm_eps": 1e-5,
        "rope_theta": rope_theta, "rope_scaling": None, "max_position_embeddings": 256,
        "tie_word_embeddings": False, "attention_bias": False, "torch_dtype": "float32", **ids,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out
