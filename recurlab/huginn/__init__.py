"""Huginn-0125 format support: open a Hugging Face `huginn_raven` folder as a recurlab model.

    from recurlab.huginn import is_huginn_folder, open_huginn, write_random_huginn
    if is_huginn_folder("models/huginn-0125"):                 # no torch needed for this check
        model, tok, cfg = open_huginn("models/huginn-0125", device="cuda")   # bf16 on CUDA
    write_random_huginn("tmp/tiny", n_embd=64, n_heads=4, seed=0)          # tests, benchmarks

Importing this package does not import torch; `open_huginn` and `write_random_huginn` import it
when called. See recurlab/huginn/README.md for running the real checkpoint.
"""

from __future__ import annotations

from recurlab.huginn.config import HuginnConfig, is_huginn_folder, read_huginn_config


def open_huginn(path, device: str = "cpu", dtype=None):
    """(model, tokenizer, RunConfig) for a Huginn-format folder; see recurlab.huginn.loader."""
    from recurlab.huginn.loader import open_huginn as _open

    return _open(path, device=device, dtype=dtype)


def write_random_huginn(path, **kwargs):
    """Write a random Huginn-format folder; see recurlab.huginn.writer for the arguments."""
    from recurlab.huginn.writer import write_random_huginn as _write

    return _write(path, **kwargs)


__all__ = ["HuginnConfig", "is_huginn_folder", "open_huginn", "read_huginn_config", "write_random_huginn"]
