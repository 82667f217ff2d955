"""Open a run directory for inference: model weights, tokenizer, config, checkpoint.

    model, tok, cfg, ckpt = open_run("runs/add-1")             # latest complete checkpoint
    model, tok, cfg, ckpt = open_run("add-1", step=500, device="cuda", runs_dir="runs")
"""

from __future__ import annotations

from pathlib import Path

from recurlab.checkpoint import load_model
from recurlab.config import run_config
from recurlab.devices import check_device
from recurlab.rundir import DEFAULT_RUNS_DIR, RunDir, resolve_run
from recurlab.tokenizer import run_tokenizer


def open_run(run_dir: str | Path | RunDir, step: int | None = None, device: str = "cpu",
             runs_dir: str | Path = DEFAULT_RUNS_DIR):
    """-> (model in eval mode on `device`, tokenizer, RunConfig, Checkpoint)."""
    check_device(device)
    run = run_dir if isinstance(run_dir, RunDir) else resolve_run(str(run_dir), runs_dir)
    cfg = run_config(run)
    tokenizer = run_tokenizer(run)
    model, ckpt = load_model(run, step=step, device=device)
    return model, tokenizer, cfg, ckpt
