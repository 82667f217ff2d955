"""Sweeps of r: one checkpoint evaluated at several r on its held-out data, and the result saved.

    result = run_sweep(run, rs=[1, 2, 4, 8])        # loads the checkpoint, saves sweeps/... (recurlab.sweep)
    result = run_sweep(run)                           # default r values: powers of two up to 4 x r_mean
    run_sweep(run, [8, 32], difficulties=[5, 6], on_row=print, cancel=threading.Event())

The loop over r is training's periodic evaluation too (recurlab.heldout.evaluate_heldout).
"""

from __future__ import annotations

import threading

from recurlab.checkpoint import load_model
from recurlab.config import default_rs, run_config
from recurlab.data import make_data
from recurlab.devices import resolve_device
from recurlab.errors import InferenceError
from recurlab.heldout import evaluate_heldout
from recurlab.options.generate import DEVICE
from recurlab.rundir import RunDir
from recurlab.sweep import SweepResult, save_sweep


def _check_levels_fit(cfg, data, difficulties: list[int]) -> None:
    """Every held-out example of the requested levels must fit the model's context."""
    for d in difficulties:
        longest = max(len(ex.prompt) + len(ex.answer) + 1 for ex in data.heldout(d))
        if longest > cfg.model.block_size:
            raise InferenceError(f"--difficulties: level {d} needs {longest} tokens but the model's block_size is "
                                 f"{cfg.model.block_size}; choose lower levels")


def run_sweep(
    run: RunDir,
    rs: list[int] | None = None,
    step: int | None = None,
    device: str = DEVICE,
    on_row=None,
    cancel: threading.Event | None = None,
    difficulties: list[int] | None = None,
) -> SweepResult:
    """Evaluate the checkpoint (latest complete one by default) at each r and save the result.

    `rs` defaults to powers of two up to 4 x r_mean. `difficulties` evaluates task levels other
    than the run's own, e.g. harder than any trained. A cancelled sweep keeps and saves the rows
    finished so far, marked incomplete.
    """
    cfg = run_config(run)
    rs = list(rs) if rs else default_rs(cfg.train.r_mean)
    if difficulties:
        if cfg.data.source != "task":  # refused before loading anything
            raise InferenceError("--difficulties applies to runs on an embedded task, not to text runs")
        cfg.data.difficulties = list(difficulties)
    device = resolve_device(device)
    model, ckpt = load_model(run, step, device)
    data = make_data(cfg, run)  # text runs: the tokenizer saved in the run, not a fresh one
    if difficulties:
        _check_levels_fit(cfg, data, difficulties)
    rows = evaluate_heldout(model, data, rs, device, on_row=on_row, cancel=cancel)
    counts = dict(getattr(data, "heldout_counts", {}))
    result = SweepResult(run=run.name, step=ckpt.step, rows=rows, complete=len(rows) == len(rs), heldout=counts)
    if rows:
        result.path = save_sweep(run, result, rs, difficulties or cfg.data.difficulties, difficulties)
    return result
