"""Huginn-0125 (`model_type: "huginn_raven"`, sandwich blocks) folders in recurlab's terms.

    claims("models/huginn-0125")           # True for a huginn_raven folder with sandwich blocks
    spec = read_huginn_config("models/huginn-0125")
    spec.model          # ModelConfig with Huginn's shape, rope base, embed scale and state std
    spec.r_default      # the r the model was trained around (mean_recurrence, 32)

Facts taken from the reference configuration (seal-rg/recurrent-pretraining, raven_config_minimal):
keys missing from config.json take the reference defaults (rope_base 50000, qk_bias true, tied
embeddings, norm_eps 1e-6); the state std is sqrt(2 / (5 d)) and the embedding scale sqrt(d)
unless config.json carries its own `init_values`. The tensors keep recurlab's names; how their
layouts differ (qk_bias, the tied head, the saved rotary table) is in recurlab.families.tensors.
No torch here, so `recurlab inspect --model` can reject a wrong folder instantly.
"""

from __future__ import annotations

import math
from pathlib import Path

from recurlab.config import ModelConfig
from recurlab.errors import ModelFormatError
from recurlab.families.common import FolderSpec, checker, tensor_names, token_id
from recurlab.folders import model_type, read_config_json

MODEL_TYPE = "huginn_raven"
DOWNLOAD_HINT = "huggingface-cli download tomg-group-umd/huginn-0125 --local-dir DIR"
TIED_HEAD = "lm_head.weight"  # a copy of the tied embedding in the files
ROPE_TABLE = "freqs_cis"  # the saved rotary table (1, block_size, 1, head_dim/2, [cos, sin])

# the reference defaults for keys that a config.json may leave out
DEFAULTS = {
    "n_embd": 5280,
    "n_heads": 55,
    "block_size": 4096,
    "vocab_size": 65536,
    "tie_embeddings": True,
    "intermediate_size": 17920,
    "bias": False,
    "norm_eps": 1e-6,
    "n_layers_in_prelude": 2,
    "n_layers_in_recurrent_block": 4,
    "n_layers_in_coda": 2,
    "mean_recurrence": 32,
    "mean_backprop_depth": 8,
    "qk_bias": True,
    "rope_base": 50_000.0,
}

# architecture switches whose only value recurlab's model implements
SUPPORTED = {
    "block_class_name": "SandwichBlock",
    "norm_class_name": "RMSNorm_llama",
    "mlp_class_name": "GatedMLP",
    "nonlin_name": "SiLU",
    "injection_type": "linear",
}


def claims(path: str | Path) -> bool:
    """True for a huginn_raven folder that is not a retrofitted one: its blocks have Huginn's norm_1..4,
    or its tensors do not say (a retrofitted folder has norm_1 and norm_2 only, recurlab.families.retrofit)."""
    if model_type(Path(path)) != MODEL_TYPE:
        return False
    names = tensor_names(Path(path))
    return "transformer.core_block.0.norm_3.weight" in names or "transformer.core_block.0.norm_1.weight" not in names


def read_huginn_config(path: str | Path) -> FolderSpec:
    folder = Path(path)
    raw = read_config_json(folder, DOWNLOAD_HINT)
    cfg_path = folder / "config.json"
    found = raw.get("model_type")
    if found != MODEL_TYPE:
        arch = ",".join(raw.get("architectures") or []) or "unknown"
        raise ModelFormatError(
            f"{folder} holds a {found or 'untyped'} model ({arch}), not Huginn ({MODEL_TYPE}); recurlab opens only Huginn-format folders and run directories"
        )
    for key, want in SUPPORTED.items():
        if key in raw and raw[key] != want:
            raise ModelFormatError(f"{cfg_path}: {key}={raw[key]!r} is not supported (recurlab implements {want} only)")

    def get(key: str, *aliases: str):
        for k in (key, *aliases):
            if k in raw and raw[k] is not None:
                return raw[k]
        return DEFAULTS[key]

    try:
        n_embd = int(get("n_embd", "hidden_size"))
        n_heads = int(get("n_heads", "num_attention_heads"))
        kv_heads = int(raw.get("num_key_value_heads") or n_heads)
        vocab = int(raw.get("padded_vocab_size") or get("vocab_size"))
        n_prelude = int(get("n_layers_in_prelude"))
        n_core = int(get("n_layers_in_recurrent_block"))
        n_coda = int(get("n_layers_in_coda"))
        mlp = int(get("intermediate_size"))
        block_size = int(get("block_size"))
        rope_base = float(get("rope_base"))
        norm_eps = float(get("norm_eps"))
        qk_bias = bool(get("qk_bias"))
        tied = bool(get("tie_embeddings", "tie_word_embeddings"))
        bias = bool(get("bias"))
        mean_r = int(get("mean_recurrence"))
        mean_k = int(get("mean_backprop_depth"))
        init_values = raw.get("init_values") or {}
        std = float(init_values.get("std", math.sqrt(2 / (5 * n_embd))))
        embed_scale = float(init_values.get("embed_scale", math.sqrt(n_embd)))
    except (TypeError, ValueError, AttributeError) as exc:
        raise ModelFormatError(f"{cfg_path} has a malformed value ({exc}); re-download the model folder") from None

    need = checker(cfg_path)
    need(n_embd > 0 and n_heads > 0 and n_embd % n_heads == 0, f"n_embd ({n_embd}) must be a positive multiple of n_heads ({n_heads})")
    need((n_embd // n_heads) % 2 == 0, f"head size {n_embd // n_heads} must be even for rotary positions")
    need(kv_heads == n_heads, f"num_key_value_heads={kv_heads} differs from n_heads={n_heads}; grouped-query attention is not supported")
    need(not bias, "bias=true (an adapter with a bias) is not supported; Huginn-0125 has bias=false")
    need(tied, "tie_embeddings=false is not supported; recurlab ties the output head to the embedding as Huginn-0125 does")
    need(n_core >= 1 and n_prelude >= 0 and n_coda >= 0, "layer counts must be >= 0 (>= 1 for the recurrent block)")
    need(vocab > 0 and mlp > 0 and block_size >= 2, "vocab_size, intermediate_size and block_size must be positive")

    model = ModelConfig(
        arch="recurrent", vocab_size=vocab, n_embd=n_embd, n_head=n_heads, n_prelude=n_prelude, n_core=n_core,
        n_coda=n_coda, intermediate_size=mlp, block_size=block_size, rope_base=rope_base, qk_bias=qk_bias,
        embed_scale=embed_scale, init_scale=std, norm_eps=norm_eps,
    )
    return FolderSpec(
        path=folder, family="huginn", model=model, r_default=mean_r, k=min(mean_k, mean_r),
        description=f"Huginn-format checkpoint at {folder}", seq_len=block_size,
        bos_id=token_id(raw, "bos_token_id"), eos_id=token_id(raw, "eos_token_id"), pad_id=token_id(raw, "pad_token_id"),
    )
