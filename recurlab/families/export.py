"""Export a trained recurlab run as a Hugging Face folder in Huginn-0125's format.

    out = export_run("runs/text-1", "exports/text-1")           # the latest complete checkpoint
    m = open_model(out)                                         # the same logits as the run (recurlab.engine)

The folder holds config.json (model_type huginn_raven, with the run's shape, rope base, embedding
scale and start std in `init_values`), model.safetensors with Huginn's tensor names and layouts
(qk_bias as (2, 1, heads, head_dim), a copy of the tied head as lm_head.weight, the rotary table
freqs_cis), tokenizer.json and special_tokens_map.json. A task run's character vocabulary is
written as a `tokenizers` file (one token per character; <bos> must then be written at the start
of a prompt). Only models inside Huginn's format export: recurrent, sandwich blocks, adapter,
random start, tied head, multi-head attention, adjacent-pair rotary. Huginn's reference code also
always scales embeddings by sqrt(n_embd): runs trained with another model.embed_scale export
exactly for recurlab, and `reference_note` says so. The folder is written beside
OUT_DIR under a temporary name, fsynced and renamed, and an existing non-empty OUT_DIR is refused,
so nothing is overwritten.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models

from recurlab.checkpoint import load_model
from recurlab.config import run_config
from recurlab.errors import ModelFormatError
from recurlab.families.huginn import ROPE_TABLE, TIED_HEAD
from recurlab.model import rotary_tables
from recurlab.rundir import RunDir, folder_problem, fsync_dir, resolve_run, usual_mode
from recurlab.tokenizer import run_tokenizer

HUGINN_LAYOUT = {"block": "sandwich", "rotary": "pairs", "injection": "adapter", "state_init": "random",
                 "step_norm": False, "coda_norm": True, "final_norm": True, "tie_head": True, "exit_gate": False}


def check_exportable(cfg) -> None:
    m = cfg.model
    if m.arch != "recurrent":
        raise ModelFormatError(f"only recurrent models export to Huginn's format; this run is arch={m.arch}")
    for key, want in HUGINN_LAYOUT.items():
        if getattr(m, key) != want:
            raise ModelFormatError(f"model.{key}={getattr(m, key)!r} has no place in Huginn's format (it needs {want!r})")
    if m.kv_heads != m.n_head:
        raise ModelFormatError("grouped-query attention has no place in Huginn's format (num_key_value_heads = n_heads)")


def reference_note(cfg) -> str | None:
    """Why Huginn's reference code would read this export differently from recurlab, if it would:
    the reference always multiplies embeddings (and the random start) by sqrt(n_embd)."""
    m = cfg.model
    if abs(m.embed_scale - math.sqrt(m.n_embd)) > 1e-6 * math.sqrt(m.n_embd):
        return (f"model.embed_scale={m.embed_scale:g} is not sqrt(n_embd)={math.sqrt(m.n_embd):g}: recurlab opens this export "
                "exactly, but Huginn's reference code always scales embeddings by sqrt(n_embd) (train with "
                f"model.embed_scale={math.sqrt(m.n_embd)!r} for a reference-compatible export)")
    return None


def _tokenizer_json(tok) -> tuple[str, dict]:
    """(tokenizer.json text, special token ids) for a BPE tokenizer or a character vocabulary."""
    if hasattr(tok, "to_json") and hasattr(tok, "tok"):
        return tok.to_json(), {"bos": tok.bos_id, "eos": tok.eos_id, "pad": tok.pad_id}
    # one BPE symbol per character and no merges: every character is its own token, as in CharVocab
    chars = Tokenizer(models.BPE(vocab={s: i for i, s in enumerate(tok.itos)}, merges=[]))
    chars.add_special_tokens([AddedToken(s, special=True) for s in tok.itos[:3]])
    chars.decoder = decoders.Fuse()
    return chars.to_str(), {"bos": tok.bos_id, "eos": tok.eos_id, "pad": tok.pad_id}


def _config(cfg, ids: dict, step: int) -> dict:
    m, t = cfg.model, cfg.train
    return {
        "architectures": ["RavenForCausalLM"],
        "auto_map": {"AutoConfig": "raven_config_minimal.RavenConfig",
                     "AutoModelForCausalLM": "raven_modeling_minimal.RavenForCausalLM"},
        "model_type": "huginn_raven", "torch_dtype": "float32",
        "block_size": m.block_size, "vocab_size": m.vocab_size, "padded_vocab_size": m.vocab_size,
        "padding_multiple": 1, "tie_embeddings": True, "n_embd": m.n_embd, "n_heads": m.n_head,
        "num_attention_heads": m.n_head, "num_key_value_heads": m.n_head, "intermediate_size": m.mlp_size,
        "bias": False, "architecture_class_name": "RecurrentGPT", "block_class_name": "SandwichBlock",
        "norm_class_name": "RMSNorm_llama", "norm_eps": m.norm_eps, "mlp_class_name": "GatedMLP", "nonlin_name": "SiLU",
        "init_strategy": "takase", "init_orthogonal": False, "state_init": "like-init", "injection_type": "linear",
        "n_layers": m.n_prelude + m.n_core + m.n_coda, "n_layers_in_prelude": m.n_prelude,
        "n_layers_in_recurrent_block": m.n_core, "n_layers_in_coda": m.n_coda,
        "mean_recurrence": t.r_mean, "mean_backprop_depth": t.k, "sampling_scheme": "poisson-lognormal-filling",
        "qk_bias": m.qk_bias, "activation_checkpoint_impl": "per-iteration", "rope_base": m.rope_base,
        # the reference reads the start std and the embedding scale from here
        "init_values": {"std": m.init_scale, "embed_scale": m.embed_scale},
        "bos_token_id": ids["bos"], "eos_token_id": ids["eos"], "pad_token_id": ids["pad"],
        "recurlab": {"profile": cfg.profile, "step": step},
    }


def check_out_dir(out: Path) -> None:
    """OUT_DIR must be new (or an empty folder) under folders this user can write: checked before
    the checkpoint is read, so that a bad path writes nothing."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModelFormatError(f"{out} already exists and is not empty; choose a new OUT_DIR (nothing was written)")
    problem = folder_problem(out)
    if problem:
        raise ModelFormatError(f"OUT_DIR {str(out)!r}: {problem}; choose another OUT_DIR (nothing was written)")


def export_run(run, out_dir: str | Path, step: int | None = None, runs_dir="runs") -> tuple[Path, str | None]:
    """-> (the folder, reference_note or None)."""
    out = Path(out_dir)
    check_out_dir(out)
    run = run if isinstance(run, RunDir) else resolve_run(str(run), runs_dir)
    cfg, tok = run_config(run), run_tokenizer(run)
    model, ckpt = load_model(run, step=step, device="cpu")
    check_exportable(cfg)
    text, ids = _tokenizer_json(tok)
    tensors = {}
    for name, p in model.state_dict().items():
        t = p.detach().float().contiguous()
        if name.endswith("attn.qk_bias"):
            t = t.unsqueeze(1).contiguous()  # Huginn stores (2, 1, heads, head_dim)
        tensors[name] = t
    tensors[TIED_HEAD] = model.transformer.wte.weight.detach().float().clone()
    cos, sin = rotary_tables(torch.arange(cfg.model.block_size), cfg.model.head_dim, cfg.model.rope_base)
    tensors[ROPE_TABLE] = torch.stack([cos, sin], dim=-1)[None, :, None].contiguous()  # (1, T, 1, D/2, 2)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{out.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    usual_mode(tmp / "model.safetensors")  # safetensors creates its files 0600
    (tmp / "config.json").write_text(json.dumps(_config(cfg, ids, ckpt.step), indent=2))
    (tmp / "tokenizer.json").write_text(text)
    names = {role: tok.token_str(i) for role, i in ids.items() if i is not None}
    (tmp / "special_tokens_map.json").write_text(json.dumps({f"{r}_token": n for r, n in names.items()}, indent=2))
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    fsync_dir(tmp)
    if out.exists():
        out.rmdir()  # empty, checked above
    os.replace(tmp, out)
    fsync_dir(out.parent)
    return out, reference_note(cfg)
