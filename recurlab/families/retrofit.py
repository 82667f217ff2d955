"""Retrofitted recurrence (McLeish et al. 2025): Llama-family models cut into prelude, core and coda.

    claims("models/Recurrent-TinyLlama")                        # a huginn_raven folder with Llama blocks
    spec = read_retrofit_config("models/Recurrent-TinyLlama")
    plan = retrofit_plan(spec.model)
    apply_init_from(run_cfg)        # retrofit training: shape the model after a Llama folder's config.json
    plan, fresh = llama_plan(run_cfg.model, run_cfg.model.layers)

Facts from the public conversion and modeling code (mcleish7/retrofitting-recurrence,
convert_pretrained_model/), and how recurlab expresses them:
* the converted folders keep Huginn's `model_type: "huginn_raven"` and tensor names
  (`transformer.prelude.i`, `.adapter`, `.core_block.j`, `.coda.i`, `.ln_f`, `lm_head`), so they
  are told apart from Huginn-0125 by their tensors: blocks have only `norm_1` and `norm_2`;
* a block is Llama's pre-norm one (x += attn(norm_1 x); x += mlp(norm_2 x)): block = prenorm;
* `attn.Wqkv` stacks [q; k; v] with num_key_value_heads key/value heads, and rotary is Llama's
  rotate-half with rope_theta (rotary = half); `mlp.fc` holds [gate; up];
* the adapter reads concat(state, prelude output) every step; no norm between steps or before
  the coda, `ln_f` after it (coda_norm = false); the head is untied; the embedding is not scaled;
* the start is a truncated normal of std init_values.std (init_scale = 0 gives zeros);
* the KV entry of core layer j at step s is P + s * R + j: one slot per (step, layer);
* TinyLlama's conversion keeps layers 0-3 as the prelude, 10-17 as the core and 18-21 as the coda.
"""

from __future__ import annotations

import math
from pathlib import Path

from recurlab.config import ConfigError, ModelConfig, RunConfig
from recurlab.errors import ModelFormatError
from recurlab.families.common import FolderSpec, Target, checker, tensor_names, token_id
from recurlab.families.ouro import stacked_layer
from recurlab.folders import model_type, read_config_json

DOWNLOAD_HINT = "huggingface-cli download smcleish/Recurrent-TinyLlama-3T-untrained --local-dir DIR"
LLAMA_HINT = "huggingface-cli download TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T --local-dir DIR"
HUGINN_STD = math.sqrt(2 / (5 * 5280))  # the start std the retrofit training keeps (Huginn's)
LLAMA_NORMS = {"input_layernorm": "norm_1", "post_attention_layernorm": "norm_2"}


def claims(path: str | Path) -> bool:
    """A huginn_raven folder whose blocks have norm_1 and norm_2 only (Huginn's have norm_1..4)."""
    folder = Path(path)
    if model_type(folder) != "huginn_raven":
        return False
    names = tensor_names(folder)
    return "transformer.core_block.0.norm_1.weight" in names and "transformer.core_block.0.norm_3.weight" not in names


def _shape_from(raw: dict, cfg_path: Path, keys: dict[str, tuple[str, ...]]) -> dict:
    """Read integer/float fields under any of their names; one-line errors."""
    out = {}
    try:
        for ours, names in keys.items():
            value = next((raw[n] for n in names if raw.get(n) is not None), None)
            if value is None:
                raise KeyError(names[0])
            out[ours] = value
    except KeyError as exc:
        raise ModelFormatError(f"{cfg_path} lacks {exc.args[0]!r}; config.json is incomplete") from None
    return out


def read_retrofit_config(path: str | Path) -> FolderSpec:
    folder = Path(path)
    raw = read_config_json(folder, DOWNLOAD_HINT)
    cfg_path = folder / "config.json"
    need = checker(cfg_path)
    f = _shape_from(raw, cfg_path, {
        "d": ("n_embd", "hidden_size"), "heads": ("n_heads", "num_attention_heads"),
        "mlp": ("intermediate_size",), "vocab": ("padded_vocab_size", "vocab_size"),
        "P": ("n_layers_in_prelude",), "R": ("n_layers_in_recurrent_block",), "C": ("n_layers_in_coda",),
    })
    try:
        d, heads, mlp, vocab = int(f["d"]), int(f["heads"]), int(f["mlp"]), int(f["vocab"])
        P, R, C = int(f["P"]), int(f["R"]), int(f["C"])
        kv = int(raw.get("num_key_value_heads") or heads)
        theta = float(raw.get("rope_theta") or raw.get("rope_base") or 10000.0)
        eps = float(raw.get("norm_eps", 1e-5))
        init_values = raw.get("init_values") or {}
        std = float(init_values.get("std", HUGINN_STD))
        embed_scale = float(init_values.get("embed_scale", 1.0))
        block_size = int(raw.get("max_position_embeddings") or raw.get("block_size") or 2048)
        mean_r = int(raw.get("mean_recurrence", 32))
        mean_k = int(raw.get("mean_backprop_depth", 8))
    except (TypeError, ValueError, AttributeError) as exc:
        raise ModelFormatError(f"{cfg_path} has a malformed value ({exc}); re-download the model folder") from None
    need(d > 0 and heads > 0 and d % heads == 0, f"n_embd ({d}) must be a positive multiple of n_heads ({heads})")
    need((d // heads) % 2 == 0, f"head size {d // heads} must be even for rotary positions")
    need(kv > 0 and heads % kv == 0, f"num_key_value_heads ({kv}) must divide n_heads ({heads})")
    need(not raw.get("rope_scaling"), "rope_scaling (e.g. Llama 3's) is not supported; plain rotary positions only")
    need(not raw.get("qk_bias"), "qk_bias=true is not supported for retrofitted (Llama-block) checkpoints")
    need(not raw.get("bias"), "bias=true (an adapter with a bias) is not supported")
    need(R >= 1 and P >= 0 and C >= 0, "layer counts must be >= 0 (>= 1 for the recurrent block)")
    model = ModelConfig(
        arch="recurrent", vocab_size=vocab, n_embd=d, n_head=heads, n_kv_head=kv if kv != heads else 0,
        n_prelude=P, n_core=R, n_coda=C, intermediate_size=mlp, block_size=max(block_size, 2), rope_base=theta,
        qk_bias=False, embed_scale=embed_scale, init_scale=std, norm_eps=eps, block="prenorm", rotary="half",
        injection="adapter", state_init="random", step_norm=False, coda_norm=False, final_norm=True,
        tie_head=bool(raw.get("tie_embeddings", raw.get("tie_word_embeddings", False))),
    )
    return FolderSpec(path=folder, family="retrofit", model=model, r_default=mean_r, k=min(mean_k, mean_r),
                      description=f"retrofit checkpoint at {folder}", seq_len=min(model.block_size, 4096),
                      bos_id=token_id(raw, "bos_token_id"), eos_id=token_id(raw, "eos_token_id"),
                      pad_id=token_id(raw, "pad_token_id"))


def retrofit_plan(cfg: ModelConfig) -> dict[str, Target]:
    """The folder's names are recurlab's own: every parameter maps onto itself."""
    names = ["transformer.wte.weight", "transformer.adapter.weight", "transformer.ln_f.weight"]
    block = ["norm_1.weight", "attn.Wqkv.weight", "attn.proj.weight", "norm_2.weight", "mlp.fc.weight", "mlp.proj.weight"]
    for part, n in (("prelude", cfg.n_prelude), ("core_block", cfg.n_core), ("coda", cfg.n_coda)):
        names += [f"transformer.{part}.{i}.{b}" for i in range(n) for b in block]
    if not cfg.tie_head:
        names.append("lm_head.weight")
    return {n: Target(n) for n in names}


# ---- retrofit training from a Llama-format folder ---------------------------------------------------

def parse_layers(spec: str) -> tuple[range, range, range]:
    """'0-3,10-17,18-21' -> the prelude, core and coda source layer ranges (inclusive ends)."""
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) != 3:
        raise ConfigError(f"model.layers: expected three ranges prelude,core,coda like 0-3,10-17,18-21, got {spec!r}")
    out = []
    for p in parts:
        lo, sep, hi = p.partition("-")
        try:
            a, b = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ConfigError(f"model.layers: {p!r} is not a range like 10-17") from None
        if p == "" or a < 0 or b < a:
            raise ConfigError(f"model.layers: {p!r} is not a range lo-hi with 0 <= lo <= hi")
        out.append(range(a, b + 1))
    if not len(out[1]):
        raise ConfigError("model.layers: the core range must hold at least one layer")
    return out[0], out[1], out[2]


def read_llama_config(folder: Path) -> dict:
    raw = read_config_json(folder, LLAMA_HINT)
    cfg_path = folder / "config.json"
    need = checker(cfg_path)
    need(raw.get("model_type") == "llama", f"model_type is {raw.get('model_type')!r}; retrofit training reads Llama-format folders (model_type llama)")
    f = _shape_from(raw, cfg_path, {
        "d": ("hidden_size",), "layers": ("num_hidden_layers",), "heads": ("num_attention_heads",),
        "mlp": ("intermediate_size",), "vocab": ("vocab_size",),
    })
    out = {k: int(v) for k, v in f.items()}
    out["kv"] = int(raw.get("num_key_value_heads") or out["heads"])
    out["theta"] = float(raw.get("rope_theta", 10000.0))
    out["eps"] = float(raw.get("rms_norm_eps", 1e-5))
    out["tied"] = bool(raw.get("tie_word_embeddings", False))
    out["block_size"] = int(raw.get("max_position_embeddings", 2048))
    need(not raw.get("rope_scaling"), "rope_scaling (e.g. Llama 3's) is not supported; plain rotary positions only")
    need(not raw.get("attention_bias") and not raw.get("mlp_bias"), "attention or MLP biases are not supported")
    need(raw.get("hidden_act", "silu") == "silu", f"hidden_act={raw.get('hidden_act')!r} is not supported (silu only)")
    need(out["d"] % out["heads"] == 0 and out["heads"] % out["kv"] == 0, "hidden_size, num_attention_heads and num_key_value_heads do not fit together")
    need(int(raw.get("head_dim") or out["d"] // out["heads"]) == out["d"] // out["heads"], "a head_dim other than hidden_size / num_attention_heads is not supported")
    return out


def apply_init_from(cfg: RunConfig) -> RunConfig:
    """Shape `cfg.model` after the Llama folder `model.init_from` cut at `model.layers`; the
    tokenizer defaults to the folder's. Called once, when a profile is resolved for a new run."""
    m = cfg.model
    folder = Path(m.init_from).expanduser()
    if not m.layers:
        raise ConfigError("model.layers: retrofit training needs the source layer ranges, e.g. model.layers=0-3,10-17,18-21")
    prelude, core, coda = parse_layers(m.layers)
    try:
        src = read_llama_config(folder)
    except ModelFormatError as exc:
        raise ConfigError(f"model.init_from: {exc}") from None
    top = max(r[-1] for r in (prelude, core, coda) if len(r))
    if top >= src["layers"]:
        raise ConfigError(f"model.layers: layer {top} does not exist; {folder} has layers 0-{src['layers'] - 1}")
    m.init_from = str(folder.resolve())
    m.arch, m.vocab_size, m.n_embd, m.n_head = "recurrent", src["vocab"], src["d"], src["heads"]
    m.n_kv_head = src["kv"] if src["kv"] != src["heads"] else 0
    m.n_prelude, m.n_core, m.n_coda = len(prelude), len(core), len(coda)
    m.intermediate_size, m.rope_base, m.norm_eps = src["mlp"], src["theta"], src["eps"]
    m.block_size = min(m.block_size, src["block_size"]) if m.block_size else src["block_size"]
    m.block, m.rotary, m.injection, m.state_init = "prenorm", "half", "adapter", "random"
    m.step_norm, m.coda_norm, m.final_norm, m.tie_head, m.exit_gate = False, False, True, src["tied"], False
    m.qk_bias, m.embed_scale = False, 1.0
    tok = folder / "tokenizer.json"
    if not cfg.data.tokenizer:
        if not tok.is_file():
            raise ConfigError(f"model.init_from: {folder} has no tokenizer.json; set data.tokenizer=PATH")
        cfg.data.tokenizer = str(tok.resolve())
    return cfg


def llama_plan(cfg: ModelConfig, layers: str) -> tuple[dict[str, Target], tuple[str, ...]]:
    """(plan for the kept layers, parameters that keep their fresh initialisation: the adapter,
    which a Llama checkpoint does not have). Layers outside the ranges are left unread."""
    prelude, core, coda = parse_layers(layers)
    plan = {"model.embed_tokens.weight": Target("transformer.wte.weight"),
            "model.norm.weight": Target("transformer.ln_f.weight")}
    if not cfg.tie_head:
        plan["lm_head.weight"] = Target("lm_head.weight")
    for part, rng in (("prelude", prelude), ("core_block", core), ("coda", coda)):
        for j, i in enumerate(rng):
            plan.update(stacked_layer(f"model.layers.{i}", f"transformer.{part}.{j}", cfg, LLAMA_NORMS))
    return plan, ("transformer.adapter.weight",)


def init_from_llama(model, cfg: ModelConfig) -> None:
    """Fill a freshly initialised retrofit model from `cfg.init_from` (torch imported here)."""
    from recurlab.families.tensors import copy_mapped  # torch: this module stays torch-free for the profile loader

    plan, fresh = llama_plan(cfg, cfg.layers)
    copy_mapped(model, cfg.init_from, plan, "Llama", LLAMA_HINT,
                ignore=lambda name: name.startswith("model.layers.") or name.endswith("rotary_emb.inv_freq"), fresh=fresh)
