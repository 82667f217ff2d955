"""Random checkpoints in every folder format recurlab opens, at any shape (for tests and benchmarks).

    from recurlab.families.writers import write_random_huginn, write_random_ouro, write_random_retrofit, write_random_llama
    write_random_huginn("tmp/tiny-huginn", n_embd=64, n_heads=4, vocab_size=512, seed=0)
    write_random_huginn("tmp/huginn-shape", **HUGINN_0125, dtype="bfloat16")   # about 7.8 GB
    write_random_ouro("tmp/ouro", hidden=64, layers=2, heads=4, kv_heads=2, steps=4, seed=0)
    write_random_retrofit("tmp/rr", hidden=64, heads=4, kv_heads=2, prelude=1, core=2, coda=1)
    write_random_llama("tmp/llama", hidden=64, layers=6, heads=4, kv_heads=2)

Each folder gets a config.json with the format's keys, safetensors with its documented tensor names
and shapes (split into shards with model.safetensors.index.json) and a tokenizer.json from a small
byte-level BPE (recurlab's BPETokenizer, which uses Huginn's special-token names). Norm weights are
drawn around 1 (not all ones) and biases (qk_bias, the exit gate's) are drawn too, so a test notices
a norm or the gate applied in the wrong place.

Huginn-0125 folders hold the reference parameter names and layouts (Wqkv rows [q|k|v], qk_bias
(2, 1, heads, head_dim), mlp.fc rows [gate|up], a duplicate lm_head.weight and the rotary table
freqs_cis) and a special_tokens_map.json; one `model.safetensors` when `max_shard_bytes=0`. Their
tensors are drawn one at a time and each shard is written before the next is drawn, so memory stays
at one shard, even at the real model's shape.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from recurlab.text.bpe import SPECIALS, BPETokenizer

HUGINN_0125 = dict(
    n_embd=5280, n_heads=55, n_layers_in_prelude=2, n_layers_in_recurrent_block=4, n_layers_in_coda=2,
    intermediate_size=17920, vocab_size=65536, block_size=4096,
)

CORPUS = [
    "The capital of Westphalia is Muenster, a city with a long history.",
    "A recurrent depth model thinks longer by iterating one block over a latent state.",
    "12 + 34 = 46. 100 - 1 = 99. 7 * 8 = 56. The answer is 42.",
    "def add(a, b):\n    return a + b\n",
    "Question: what is the sum of 3 and 4? Answer: 7.",
    "Latent states converge to fixed points, orbit, or slide as the iterations go on.",
    "the quick brown fox jumps over the lazy dog THE QUICK BROWN FOX",
]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _block_tensors(prefix: str, d: int, heads: int, mlp: int, qk_bias: bool) -> list[tuple[str, tuple, str]]:
    hd = d // heads
    out = [
        (f"{prefix}.norm_1.weight", (d,), "norm"),
        (f"{prefix}.attn.Wqkv.weight", (3 * d, d), "linear"),
    ]
    if qk_bias:
        out.append((f"{prefix}.attn.qk_bias", (2, 1, heads, hd), "bias"))
    out += [
        (f"{prefix}.attn.proj.weight", (d, d), "linear"),
        (f"{prefix}.norm_2.weight", (d,), "norm"),
        (f"{prefix}.mlp.fc.weight", (2 * mlp, d), "linear"),
        (f"{prefix}.mlp.proj.weight", (d, mlp), "linear"),
        (f"{prefix}.norm_3.weight", (d,), "norm"),
        (f"{prefix}.norm_4.weight", (d,), "norm"),
    ]
    return out


def tensor_plan(n_embd: int, n_heads: int, n_prelude: int, n_core: int, n_coda: int, mlp: int,
                vocab: int, block_size: int, qk_bias: bool) -> list[tuple[str, tuple, str]]:
    """(name, shape, kind) in the order the reference model registers them."""
    d = n_embd
    plan = [("transformer.wte.weight", (vocab, d), "embed")]
    for i in range(n_prelude):
        plan += _block_tensors(f"transformer.prelude.{i}", d, n_heads, mlp, qk_bias)
    plan.append(("transformer.adapter.weight", (d, 2 * d), "linear"))
    for j in range(n_core):
        plan += _block_tensors(f"transformer.core_block.{j}", d, n_heads, mlp, qk_bias)
    for i in range(n_coda):
        plan += _block_tensors(f"transformer.coda.{i}", d, n_heads, mlp, qk_bias)
    plan.append(("transformer.ln_f.weight", (d,), "norm"))
    plan.append(("lm_head.weight", (vocab, d), "head"))
    plan.append(("freqs_cis", (1, block_size, 1, d // n_heads // 2, 2), "rope"))
    return plan


def _rope_table(block_size: int, head_dim: int, base: float) -> torch.Tensor:
    # written from the definition (not from recurlab.model) so the loader's check is independent
    inv = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    ang = torch.arange(block_size, dtype=torch.float64)[:, None] * inv[None, :]
    return torch.stack([ang.cos(), ang.sin()], dim=-1)[None, :, None].float()


def _draw(kind: str, shape: tuple, std: float, gen: torch.Generator, wte: torch.Tensor | None = None) -> torch.Tensor:
    if kind == "norm":  # not all ones, so that a test notices a norm applied in the wrong place
        return 1.0 + 0.2 * torch.randn(shape, generator=gen)
    if kind == "bias":
        return 0.5 * torch.randn(shape, generator=gen)
    if kind == "head":
        return wte.clone()
    return std * torch.randn(shape, generator=gen)


def _write_weights(out: Path, plan, sizes, total, budget, n_embd, n_heads, block_size, rope_base, torch_dtype, seed):
    groups: list[list[int]] = [[]]
    used = 0
    for k, size in enumerate(sizes):
        if budget and groups[-1] and used + size > budget:
            groups.append([])
            used = 0
        groups[-1].append(k)
        used += size

    std = math.sqrt(2 / (5 * n_embd))
    gen = torch.Generator().manual_seed(seed)
    single = not budget
    names = ["model.safetensors"] if single else [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
    weight_map: dict[str, str] = {}
    wte = None
    for fname, group in zip(names, groups):
        tensors: dict[str, torch.Tensor] = {}
        for k in group:
            name, shape, kind = plan[k]
            if kind == "rope":
                t = _rope_table(block_size, n_embd // n_heads, rope_base)
            else:
                t = _draw(kind, shape, std, gen, wte).to(torch_dtype)
            if kind == "embed":
                wte = t
            tensors[name] = t.contiguous()
            weight_map[name] = fname
        save_file(tensors, str(out / fname), metadata={"format": "pt"})
        del tensors

    if not single:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def write_random_huginn(
    path: str | Path,
    n_embd: int = 64,
    n_heads: int = 4,
    n_layers_in_prelude: int = 1,
    n_layers_in_recurrent_block: int = 2,
    n_layers_in_coda: int = 1,
    intermediate_size: int = 0,
    vocab_size: int = 512,
    block_size: int = 128,
    rope_base: float = 50_000.0,
    qk_bias: bool = True,
    mean_recurrence: int = 32,
    seed: int = 0,
    dtype: str = "float32",
    max_shard_bytes: int | None = None,
    tokenizer_vocab: int = 512,
    weights: bool = True,
) -> Path:
    """Write the folder and return its path. `max_shard_bytes=None` splits into about 3 shards;
    `weights=False` writes only config.json and the tokenizer (the benchmark's direct mode)."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    mlp = intermediate_size or 2 * n_embd
    torch_dtype = DTYPES[dtype]
    plan = tensor_plan(n_embd, n_heads, n_layers_in_prelude, n_layers_in_recurrent_block, n_layers_in_coda,
                       mlp, vocab_size, block_size, qk_bias)
    elem = torch.tensor([], dtype=torch_dtype).element_size()
    sizes = [math.prod(shape) * (4 if kind == "rope" else elem) for _, shape, kind in plan]
    total = sum(sizes)
    budget = max_shard_bytes if max_shard_bytes is not None else max(total // 3 + 1, 1)

    if weights:
        _write_weights(out, plan, sizes, total, budget, n_embd, n_heads, block_size, rope_base, torch_dtype, seed)

    tok = BPETokenizer.train(CORPUS * 4, vocab_size=min(tokenizer_vocab, vocab_size))
    tok.save(out / "tokenizer.json")
    ids = {"bos": tok.bos_id, "eos": tok.eos_id, "pad": tok.pad_id}
    (out / "special_tokens_map.json").write_text(json.dumps({f"{r}_token": n for r, n in SPECIALS.items()}, indent=2))

    config = {
        "architectures": ["RavenForCausalLM"],
        "auto_map": {
            "AutoConfig": "raven_config_minimal.RavenConfig",
            "AutoModelForCausalLM": "raven_modeling_minimal.RavenForCausalLM",
        },
        "model_type": "huginn_raven",
        "torch_dtype": dtype,
        "block_size": block_size,
        "vocab_size": vocab_size,
        "padding_multiple": 4096,
        "tie_embeddings": True,
        "n_embd": n_embd,
        "n_heads": n_heads,
        "num_attention_heads": n_heads,
        "num_key_value_heads": n_heads,
        "intermediate_size": mlp,
        "bias": False,
        "architecture_class_name": "RecurrentGPT",
        "block_class_name": "SandwichBlock",
        "norm_class_name": "RMSNorm_llama",
        "norm_eps": 1e-6,
        "mlp_class_name": "GatedMLP",
        "nonlin_name": "SiLU",
        "init_strategy": "takase",
        "init_orthogonal": False,
        "state_init": "like-init",
        "injection_type": "linear",
        "n_layers_in_recurrent_block": n_layers_in_recurrent_block,
        "mean_recurrence": mean_recurrence,
        "sampling_scheme": "poisson-lognormal-filling",
        "mean_backprop_depth": min(8, mean_recurrence),
        "n_layers_in_prelude": n_layers_in_prelude,
        "n_layers_in_coda": n_layers_in_coda,
        "qk_bias": qk_bias,
        "activation_checkpoint_impl": "per-iteration",
        "rope_base": rope_base,
        "bos_token_id": ids["bos"],
        "eos_token_id": ids["eos"],
        "pad_token_id": ids["pad"],
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


OURO_1_4B = dict(hidden=2048, layers=24, heads=16, kv_heads=16, mlp=5632, vocab=49152, steps=4)


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
