"""Ouro (ByteDance, `model_type: "ouro"`) folders in recurlab's terms: configuration and tensor map.

    claims("models/Ouro-1.4B")                      # True: config.json says model_type ouro
    spec = read_ouro_config("models/Ouro-1.4B")     # FolderSpec: spec.model, spec.r_default = 4
    plan = ouro_plan(spec.model)                    # checkpoint name -> Target (recurlab parameter rows)

Facts from the public modeling code (modeling_ouro.py), and how recurlab expresses them:
* all `num_hidden_layers` layers form the core; no prelude, coda or input injection
  (n_prelude = n_coda = 0, injection = none); the first step's input is the token embedding
  (state_init = embedding) and `model.norm` is applied after every step, its output feeding
  the next step and the head (step_norm; no norm around the empty coda);
* a block is x += input_layernorm_2(attn(input_layernorm(x))); x += post_attention_layernorm_2(
  mlp(post_attention_layernorm(x))) (block = peri, norms 1..4 in that order);
* q/k/v/o projections without biases, grouped-query heads, rotate-half rotary with rope_theta;
  gate/up/down SwiGLU (gate and up stack into `mlp.fc`, q, k, v into `attn.Wqkv`);
* `model.early_exit_gate` (hidden -> 1, with bias) scores every step's normalized state;
* the head is untied unless tie_word_embeddings says otherwise;
* the cache has one slot per (step, layer) and step t attends to step t's keys only, which is
  recurlab's core cache layout.
Sliding-window layers and rope scaling are refused with one line.
"""

from __future__ import annotations

from pathlib import Path

from recurlab.config import ModelConfig
from recurlab.errors import ModelFormatError
from recurlab.families.common import FolderSpec, Target, checker, token_id
from recurlab.folders import model_type, read_config_json

MODEL_TYPE = "ouro"
DOWNLOAD_HINT = "huggingface-cli download ByteDance/Ouro-1.4B --local-dir DIR"

NORMS = {"input_layernorm": "norm_1", "input_layernorm_2": "norm_2",
         "post_attention_layernorm": "norm_3", "post_attention_layernorm_2": "norm_4"}


def claims(path: str | Path) -> bool:
    return model_type(Path(path)) == MODEL_TYPE


def read_ouro_config(path: str | Path) -> FolderSpec:
    folder = Path(path)
    raw = read_config_json(folder, DOWNLOAD_HINT)
    cfg_path = folder / "config.json"
    need = checker(cfg_path)
    need(raw.get("model_type") == MODEL_TYPE, f"model_type is {raw.get('model_type')!r}, not {MODEL_TYPE!r}")
    try:
        d = int(raw["hidden_size"])
        layers = int(raw["num_hidden_layers"])
        heads = int(raw["num_attention_heads"])
        kv = int(raw.get("num_key_value_heads") or heads)
        mlp = int(raw["intermediate_size"])
        vocab = int(raw["vocab_size"])
        eps = float(raw.get("rms_norm_eps", 1e-6))
        theta = float(raw.get("rope_theta", 10000.0))
        steps = int(raw.get("total_ut_steps", 4))
        threshold = float(raw.get("early_exit_threshold") or 1.0)
        block_size = int(raw.get("max_position_embeddings", 32768))
        head_dim = int(raw.get("head_dim") or (d // heads if heads else 0))
        tied = bool(raw.get("tie_word_embeddings", False))
    except KeyError as exc:
        raise ModelFormatError(f"{cfg_path} lacks {exc.args[0]!r}; it is not a complete Ouro config.json") from None
    except (TypeError, ValueError) as exc:
        raise ModelFormatError(f"{cfg_path} has a malformed value ({exc}); re-download the model folder") from None
    need(d > 0 and heads > 0 and d % heads == 0, f"hidden_size ({d}) must be a positive multiple of num_attention_heads ({heads})")
    need(head_dim == d // heads, f"head_dim={head_dim} differs from hidden_size / num_attention_heads; not supported")
    need(head_dim % 2 == 0, f"head size {head_dim} must be even for rotary positions")
    need(kv > 0 and heads % kv == 0, f"num_key_value_heads ({kv}) must divide num_attention_heads ({heads})")
    need(layers >= 1 and steps >= 1, "num_hidden_layers and total_ut_steps must be >= 1")
    need(raw.get("hidden_act", "silu") == "silu", f"hidden_act={raw.get('hidden_act')!r} is not supported (silu only)")
    need(not raw.get("rope_scaling"), "rope_scaling is not supported (plain rotary positions only)")
    types = raw.get("layer_types") or []
    need(not raw.get("use_sliding_window") and all(t == "full_attention" for t in types),
         "sliding-window attention layers are not supported (full attention only)")
    need(vocab > 0 and mlp > 0, "vocab_size and intermediate_size must be positive")
    model = ModelConfig(
        arch="recurrent", vocab_size=vocab, n_embd=d, n_head=heads, n_kv_head=kv if kv != heads else 0,
        n_prelude=0, n_core=layers, n_coda=0, intermediate_size=mlp, block_size=max(block_size, 2),
        rope_base=theta, qk_bias=False, embed_scale=1.0, init_scale=0.0, norm_eps=eps,
        block="peri", rotary="half", injection="none", state_init="embedding", step_norm=True,
        coda_norm=False, final_norm=False, tie_head=tied, exit_gate=True,
    )
    return FolderSpec(path=folder, family="ouro", model=model, r_default=steps, k=steps,
                      description=f"ouro checkpoint at {folder}", seq_len=min(model.block_size, 4096),
                      bos_id=token_id(raw, "bos_token_id"), eos_id=token_id(raw, "eos_token_id"),
                      pad_id=token_id(raw, "pad_token_id"), extra={"early_exit_threshold": threshold})


def stacked_layer(src: str, dst: str, cfg: ModelConfig, norms: dict[str, str]) -> dict[str, Target]:
    """Map one Llama-style layer (q/k/v/o, gate/up/down, named norms) onto a recurlab block."""
    hd = cfg.head_dim
    q, kv, m = cfg.n_head * hd, cfg.kv_heads * hd, cfg.mlp_size
    plan = {
        f"{src}.self_attn.q_proj.weight": Target(f"{dst}.attn.Wqkv.weight", 0, q),
        f"{src}.self_attn.k_proj.weight": Target(f"{dst}.attn.Wqkv.weight", q, kv),
        f"{src}.self_attn.v_proj.weight": Target(f"{dst}.attn.Wqkv.weight", q + kv, kv),
        f"{src}.self_attn.o_proj.weight": Target(f"{dst}.attn.proj.weight"),
        f"{src}.mlp.gate_proj.weight": Target(f"{dst}.mlp.fc.weight", 0, m),
        f"{src}.mlp.up_proj.weight": Target(f"{dst}.mlp.fc.weight", m, m),
        f"{src}.mlp.down_proj.weight": Target(f"{dst}.mlp.proj.weight"),
    }
    plan.update({f"{src}.{name}.weight": Target(f"{dst}.{ours}.weight") for name, ours in norms.items()})
    return plan


def ouro_plan(cfg: ModelConfig) -> dict[str, Target]:
    plan = {"model.embed_tokens.weight": Target("transformer.wte.weight"),
            "model.norm.weight": Target("transformer.ln_f.weight"),
            "model.early_exit_gate.weight": Target("transformer.exit_gate.weight"),
            "model.early_exit_gate.bias": Target("transformer.exit_gate.bias")}
    if not cfg.tie_head:
        plan["lm_head.weight"] = Target("lm_head.weight")
    for i in range(cfg.n_core):
        plan.update(stacked_layer(f"model.layers.{i}", f"transformer.core_block.{i}", cfg, NORMS))
    return plan
