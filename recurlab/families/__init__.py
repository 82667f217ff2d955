"""Looped-model families beside recurlab's own runs: Huginn-0125, Ouro and retrofitted Llama models.

    from recurlab.families import detect_family, open_folder
    detect_family("models/Ouro-1.4B")          # "ouro" (no torch: config.json and weight headers only)
    model, tok, cfg = open_folder("models/Ouro-1.4B", device="cuda")     # bf16 on CUDA, fp32 on CPU

`open_folder` is the one way a Hugging Face folder becomes a recurlab model; every family maps onto
the same RecurrentLM (see recurlab.model) so the engine, traces, sweeps and the TUI need nothing
per family. Retrofitted checkpoints keep Huginn's model type and are told apart by their tensors.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

FAMILIES = {
    "huginn": "Huginn-0125 (huginn_raven, sandwich blocks)",
    "ouro": "Ouro (model_type ouro)",
    "retrofit": "retrofitted recurrence (huginn_raven with Llama blocks)",
}


def _tensor_names(folder: Path) -> set[str]:
    """Names in the folder's safetensors, from the index or the single file's header (no torch)."""
    index = folder / "model.safetensors.index.json"
    try:
        if index.is_file():
            return set(json.loads(index.read_text()).get("weight_map", {}))
        single = folder / "model.safetensors"
        if single.is_file():
            with single.open("rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                return set(json.loads(f.read(n))) - {"__metadata__"}
    except (OSError, ValueError, struct.error, AttributeError):
        pass
    return set()


def detect_family(path: str | Path) -> str | None:
    """'huginn', 'ouro', 'retrofit', 'llama' (a plain Llama folder, for retrofit training) or None."""
    cfg = Path(path) / "config.json"
    try:
        data = json.loads(cfg.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    kind = data.get("model_type")
    if kind == "ouro":
        return "ouro"
    if kind == "llama":
        return "llama"
    if kind != "huginn_raven":
        return None
    names = _tensor_names(Path(path))
    if "transformer.core_block.0.norm_3.weight" not in names and "transformer.core_block.0.norm_1.weight" in names:
        return "retrofit"
    return "huginn"


def open_folder(path, device: str = "cpu", dtype=None):
    """(model in eval mode, tokenizer, RunConfig) for any supported folder; see recurlab.families.loader."""
    from recurlab.families.loader import open_folder as _open

    return _open(path, device=device, dtype=dtype)


__all__ = ["FAMILIES", "detect_family", "open_folder"]
