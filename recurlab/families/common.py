"""What every foreign model folder reader shares (no torch here, so folders can be told apart fast).

    spec = FolderSpec(path, family="ouro", model=ModelConfig(...), r_default=4, k=4, description="...")
    names = tensor_names(folder)                  # the safetensors' tensor names, from headers only
    t = Target("transformer.core_block.0.attn.Wqkv.weight", row=0, rows=2048)
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from recurlab.config import ModelConfig
from recurlab.errors import ModelFormatError


@dataclass(frozen=True)
class Target:
    """Where one checkpoint tensor goes: rows [row, row + rows) of a recurlab parameter."""

    param: str
    row: int = 0
    rows: int | None = None  # None: all of the parameter's rows


@dataclass
class FolderSpec:
    """A Hugging Face folder described in recurlab's terms."""

    path: Path
    family: str  # huginn, ouro, retrofit
    model: ModelConfig
    r_default: int  # the recurrence the model was trained at (Ouro: total_ut_steps)
    k: int  # backprop depth it was trained with (for continued training)
    description: str  # the RunConfig's description, e.g. "ouro checkpoint at models/Ouro-1.4B"
    seq_len: int  # the sequence length a RunConfig of this folder gives (evaluation, sweeps)
    bos_id: int | None = None
    eos_id: int | None = None
    pad_id: int | None = None
    extra: dict = field(default_factory=dict)  # family facts worth showing (e.g. Ouro's early_exit_threshold)


def tensor_names(folder: Path) -> set[str]:
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


def token_id(raw: dict, key: str) -> int | None:
    v = raw.get(key)
    if isinstance(v, list) and v and isinstance(v[0], int):  # some configs list several eos ids
        v = v[0]
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else None


def checker(cfg_path: Path):
    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ModelFormatError(f"{cfg_path}: {msg}")

    return need
