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
from recurlab.tasks import get_task, levels_problem




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
        problem = levels_problem(get_task(cfg.data.task), difficulties, cfg.model.block_size)
        if problem:  # before any example is written: level 100000 of addition is a 100000-digit number
            raise InferenceError(f"--difficulties: {problem}")
        cfg.data.difficulties = list(difficulties)
    device = resolve_device(device)
    model, ckpt = load_model(run, step, device)
    data = make_data(cfg, run)  # text runs: the tokenizer saved in the run, not a fresh one
    rows = evaluate_heldout(model, data, rs, device, on_row=on_row, cancel=cancel)
    counts = dict(getattr(data, "heldout_counts", {}))
    result = SweepResult(run=run.name, step=ckpt.step, rows=rows, complete=len(rows) == len(rs), heldout=counts)
    if rows:
        result.path = save_sweep(run, result, rs, difficulties or cfg.data.difficulties, difficulties)
    return result
