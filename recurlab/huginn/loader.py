"""Open a Huginn-format model folder as recurlab's model, tokenizer and run configuration.

    from recurlab.huginn import open_huginn
    model, tok, cfg = open_huginn("models/huginn-0125", device="cuda")   # bf16 on CUDA, fp32 on CPU
    cfg.model          # ModelConfig (Huginn's shape)
    cfg.train.r_mean   # 32: the mean recurrence Huginn was trained with, a sensible default r

The returned RunConfig is not a training run: it only describes the model (profile = folder name,
data.tokenizer = its tokenizer.json) so that code written for run directories can read it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from recurlab.config import DataConfig, HardwareConfig, RunConfig, TrainConfig
from recurlab.devices import check_device
from recurlab.errors import InferenceError
from recurlab.huginn.config import read_huginn_config
from recurlab.huginn.tokenizer import load_huginn_tokenizer
from recurlab.huginn.weights import load_huginn_weights, shard_map

DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def _resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        by_name = {v: k for k, v in DTYPE_NAMES.items()}
        if dtype not in by_name:
            raise InferenceError(f"dtype {dtype!r} is not one of {', '.join(by_name)}")
        return by_name[dtype]
    return dtype


def open_huginn(path: str | Path, device: str = "cpu", dtype=None):
    """(model in eval mode on `device`, BPETokenizer, RunConfig). Raises ModelFormatError."""
    hc = read_huginn_config(path)
    check_device(device)
    dev = torch.device(device)
    tdtype = _resolve_dtype(dtype, dev)
    shard_map(hc.path)  # a missing or pickle-only weights file is reported before anything is loaded
    tok = load_huginn_tokenizer(hc.path, {"bos": hc.bos_id, "eos": hc.eos_id, "pad": hc.pad_id})
    model = load_huginn_weights(hc.path, hc.model, dev, tdtype)
    cfg = RunConfig(
        profile=hc.path.resolve().name,
        description=f"Huginn-format checkpoint at {hc.path}",
        model=hc.model,
        data=DataConfig(source="local", name=str(hc.path), tokenizer=str(hc.path / "tokenizer.json"),
                        tokenizer_vocab=len(tok), seq_len=hc.model.block_size),
        train=TrainConfig(r_mean=hc.mean_recurrence, k=min(hc.mean_backprop_depth, hc.mean_recurrence)),
        hardware=HardwareConfig(device=str(dev), dtype=DTYPE_NAMES.get(tdtype, str(tdtype))),
    )
    return model, tok, cfg
