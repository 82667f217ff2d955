"""What every foreign model folder reader shares (no torch here, so folders can be told apart fast).

    spec = FolderSpec(path, family="ouro", model=ModelConfig(...), r_default=4, k=4)
    raw = read_config_json(folder, hint)          # dict, or one-line ModelFormatError
    t = Target("transformer.core_block.0.attn.Wqkv.weight", row=0, rows=2048)
"""

from __future__ import annotations

import json
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
    bos_id: int | None = None
    eos_id: int | None = None
    pad_id: int | None = None
    extra: dict = field(default_factory=dict)  # family facts worth showing (e.g. Ouro's early_exit_threshold)


def read_config_json(folder: Path, hint: str) -> dict:
    if not folder.is_dir():
        raise ModelFormatError(f"{folder} is not a folder; download the model with `{hint}`")
    path = folder / "config.json"
    if not path.is_file():
        raise ModelFormatError(f"{folder} has no config.json; it is not a Hugging Face model folder ({hint})")
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ModelFormatError(f"cannot read {path} ({exc.strerror}); check the folder's permissions") from None
    except ValueError as exc:
        raise ModelFormatError(f"{path} is not valid JSON ({exc}); re-download the model folder") from None
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path} must hold a JSON object; re-download the model folder")
    return data


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
