"""Sweeps of r: one opened checkpoint evaluated at several r on its held-out data, and the result saved.

    opened = open_model(run, step=None, device="auto")
    result = run_sweep(opened, rs=[1, 2, 4, 8])       # saves sweeps/... (recurlab.sweep)
    result = run_sweep(opened)                        # default r values: powers of two up to 4 x r_mean
    run_sweep(opened, [8, 32], difficulties=[5, 6], on_row=print, cancel=threading.Event())

The loop over r is training's periodic evaluation too (recurlab.heldout.evaluate_heldout).
"""

from __future__ import annotations

import copy
import threading

from recurlab.config import default_rs
from recurlab.data import make_data
from recurlab.engine.loading import OpenedModel
from recurlab.errors import InferenceError
from recurlab.heldout import evaluate_heldout
from recurlab.sweep import SweepResult, save_sweep
from recurlab.tasks import get_task, levels_problem


def run_sweep(
    opened: OpenedModel,
    rs: list[int] | None = None,
    on_row=None,
    cancel: threading.Event | None = None,
    difficulties: list[int] | None = None,
) -> SweepResult:
    """Evaluate the opened run checkpoint at each r and save the result into its run.

    `rs` defaults to powers of two up to 4 x r_mean. `difficulties` evaluates task levels other
    than the run's own, e.g. harder than any trained. A cancelled sweep keeps and saves the rows
    finished so far, marked incomplete.
    """
    run = opened.run
    if run is None:
        raise InferenceError(f"{opened.path} is a model folder; a sweep of r runs on a run's held-out data")
    cfg = copy.deepcopy(opened.cfg)  # the levels below are this sweep's, not the opened model's
    rs = list(rs) if rs else default_rs(cfg.train.r_mean)
    if difficulties:
        if cfg.data.source != "task":
            raise InferenceError("--difficulties applies to runs on an embedded task, not to text runs")
        problem = levels_problem(get_task(cfg.data.task), difficulties, cfg.model.block_size)
        if problem:  # before any example is written: level 100000 of addition is a 100000-digit number
            raise InferenceError(f"--difficulties: {problem}")
        cfg.data.difficulties = list(difficulties)
    data = make_data(cfg, run)  # text runs: the tokenizer saved in the run, not a fresh one
    rows = evaluate_heldout(opened.model, data, rs, opened.device, on_row=on_row, cancel=cancel)
    counts = dict(getattr(data, "heldout_counts", {}))
    result = SweepResult(run=run.name, step=opened.step, rows=rows, complete=len(rows) == len(rs), heldout=counts)
    if rows:
        result.path = save_sweep(run, result, rs, difficulties or cfg.data.difficulties, difficulties)
    return result
