"""One device resolver for training, sweeps, the engine, the CLI and the TUI.

    check_device("cuda:1")     # raises DeviceError (one line) when this machine lacks it
    resolve_device("auto")     # 'cuda' when this machine has CUDA, else 'cpu'
    resolve_device("")         # the same as auto; 'cpu', 'cuda', 'cuda:N' come back checked

torch is imported only to look for CUDA, so that `recurlab train` can check a profile's device
before it creates a run directory without paying for torch when the device is cpu.
"""

from __future__ import annotations

import re

from recurlab.errors import DeviceError

_CUDA = re.compile(r"cuda(?::(\d+))?")


def check_device(spec) -> None:
    """Raise DeviceError unless `spec` is auto (or empty), cpu, or a CUDA device this machine has."""
    spec = str(spec or "auto")
    if spec in ("auto", "cpu"):
        return
    m = _CUDA.fullmatch(spec)
    if m is None:
        raise DeviceError(f"device {spec!r} is not auto, cpu, cuda or cuda:N")
    import torch

    if not torch.cuda.is_available():
        raise DeviceError(f"device {spec!r} asked for but CUDA is not available here; use cpu "
                          "(--device cpu or hardware.device=cpu)")
    count = torch.cuda.device_count()
    if m.group(1) is not None and int(m.group(1)) >= count:
        raise DeviceError(f"device {spec!r} does not exist: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")


def resolve_device(spec="auto") -> str:
    """The device to use for `spec`: auto picks CUDA when present; anything else is checked."""
    check_device(spec)
    spec = str(spec or "auto")
    if spec != "auto":
        return spec
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
