"""Checkpoints as safetensors plus a JSON of training state; complete or absent, never half.

    save_checkpoint(run, step, model_tensors(model), optimizer_snapshot(opt), {"tokens": n, ...})
                                                 # builds .tmp-step_N, fsyncs, renames, then prunes
    model, ckpt = load_model(run, step=None, device="cpu")   # latest complete checkpoint, eval mode
    load_weights(model, ckpt.path); load_optimizer(opt, ckpt.path); read_state(ckpt.path)   # resume

Nothing is unpickled: weights and optimizer tensors are safetensors, the rest is JSON.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from recurlab.errors import CheckpointError
from recurlab.config import run_config
from recurlab.model import RecurrentLM
from recurlab.rundir import Checkpoint, RunDir, atomic_write_json, fsync_dir, usual_mode


TIED = ("lm_head.weight",)


def tied_names(model: torch.nn.Module) -> tuple[str, ...]:
    """Names that alias another tensor and are not stored (the head, when it is tied)."""
    cfg = getattr(model, "cfg", None)
    return TIED if cfg is None or cfg.tie_head else ()


def model_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    sd = model.state_dict()
    tied = tied_names(model)
    return {k: v.detach().contiguous().cpu() for k, v in sd.items() if k not in tied}


def optimizer_snapshot(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """The optimizer state as (tensors for optimizer.safetensors, JSON metadata for optimizer.json)."""
    sd = optimizer.state_dict()
    tensors, meta = {}, {"param_groups": sd["param_groups"], "state": {}}
    for pid, st in sd["state"].items():
        meta["state"][str(pid)] = {}
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"{pid}.{key}"] = val.detach().contiguous().cpu()
                meta["state"][str(pid)][key] = "tensor"
            else:
                meta["state"][str(pid)][key] = val
    return tensors, meta


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state = {}
    for pid, st in meta["state"].items():
        state[int(pid)] = {k: (tensors[f"{pid}.{k}"] if v == "tensor" else v) for k, v in st.items()}
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    run: RunDir,
    step: int,
    weights: dict[str, torch.Tensor],
    optimizer_state: tuple[dict, dict] | None,
    state: dict,
    keep: int = 3,
) -> Path:
    """Write a complete checkpoint directory atomically and prune old ones (keeping `keep`).

    Durable against a power loss, not only a crash: every file and the directory are fsynced
    before the rename, the parent directory after it, and only then are older ones deleted.
    """
    final = run.checkpoint_dir_for(step)
    tmp = final.with_name(f".tmp-{final.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(weights, str(tmp / "model.safetensors"))
    usual_mode(tmp / "model.safetensors")  # safetensors creates its files 0600
    if optimizer_state is not None:
        tensors, meta = optimizer_state
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        usual_mode(tmp / "optimizer.safetensors")
        (tmp / "optimizer.json").write_text(json.dumps(meta))
    for name in ("model.safetensors", "optimizer.safetensors", "optimizer.json"):
        if (tmp / name).exists():
            fsync_file(tmp / name)
    atomic_write_json(tmp / "state.json", {"step": step, **state})  # fsyncs itself and tmp
    fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    for old in run.checkpoints()[:-keep]:
        shutil.rmtree(old.path, ignore_errors=True)
    return final


def fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def remove_stale_temporaries(run: RunDir) -> list[Path]:
    """Delete `.tmp-step_N` directories left by a worker killed while saving (on resume: no
    other worker writes the run then). Returns what was removed."""
    removed = []
    if run.checkpoints_dir.is_dir():
        for p in run.checkpoints_dir.glob(".tmp-step_*"):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def read_state(ckpt: Path) -> dict:
    try:
        return json.loads((Path(ckpt) / "state.json").read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {ckpt} has an unreadable state.json ({exc}); delete it to fall back") from None


def load_weights(model: torch.nn.Module, ckpt: Path) -> None:
    path = Path(ckpt) / "model.safetensors"
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({exc}); delete that directory to use an older one") from None
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if k not in tied_names(model)]
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {path} does not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def load_optimizer(optimizer: torch.optim.Optimizer, ckpt: Path) -> None:
    path = Path(ckpt) / "optimizer.safetensors"
    try:
        tensors = load_file(str(path))
        meta = json.loads((Path(ckpt) / "optimizer.json").read_text())
        optimizer.load_state_dict(_unflatten_optimizer(tensors, meta))
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"optimizer state in {ckpt} is corrupt ({exc}); delete that checkpoint to use an older one") from None


def pick_checkpoint(run: RunDir, step: int | None = None) -> Checkpoint:
    cks = run.checkpoints()
    if not cks:
        raise CheckpointError(f"run {run.name} has no complete checkpoint yet; wait for one (train.checkpoint_every) or stop it")
    if step is None:
        return cks[-1]
    for c in cks:
        if c.step == step:
            return c
    raise CheckpointError(f"run {run.name} has no checkpoint at step {step}; available: {', '.join(str(c.step) for c in cks)}")


def load_model(run: RunDir, step: int | None = None, device: str = "cpu") -> tuple[RecurrentLM, Checkpoint]:
    """The run's model with the weights of a complete checkpoint, in eval mode."""
    cfg = run_config(run)
    ckpt = pick_checkpoint(run, step)
    model = RecurrentLM(cfg.model)
    load_weights(model, ckpt.path)
    return model.to(device).eval(), ckpt
