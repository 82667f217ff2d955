"""Sweeps of r: one checkpoint evaluated at several r, and the shared held-out evaluation loop.

    result = run_sweep(run, rs=[1, 2, 4, 8])        # loads the checkpoint, saves sweeps/... (recurlab.sweep)
    result = run_sweep(run)                           # default r values: powers of two up to 4 x r_mean
    run_sweep(run, [8, 32], difficulties=[5, 6], on_row=print, cancel=threading.Event())
    rows = evaluate(model, data, rs=[1, 4], device="cpu")   # what training's periodic eval runs too

`evaluate` runs the model's own forward (the same core step as everything else) on the held-out
batches a data object gives (TaskData: per difficulty; TextData: validation windows) and lets the
data object turn the sums into a row: task runs get `acc@<level>` and `acc`, text runs `bpb`.
Every row has `r`, `loss` and `tokens_per_s`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter

import torch

from recurlab.config import default_rs, run_config
from recurlab.data import IGNORE
from recurlab.errors import InferenceError
from recurlab.rundir import RunDir
from recurlab.sweep import SweepResult, save_sweep
from recurlab.tasks import get_task, levels_problem


@torch.no_grad()
def evaluate(model, data, rs: list[int], device, autocast=None, on_row=None, cancel: threading.Event | None = None,
             batch_size: int | None = None) -> list[dict]:
    """Held-out loss (and the data's own scores) for each r; one row per r. Setting `cancel` stops
    before the next r; `on_row(row)` sees each row as it finishes."""
    was_training = model.training
    model.eval()
    rows = []
    token_bytes = data.token_bytes.to(device) if data.token_bytes is not None else None
    try:
        for r in rs:
            if cancel is not None and cancel.is_set():
                break
            groups: dict = {}  # group (a task level; None for text) -> Counter of sums
            total, n_tok, t0 = Counter(), 0, time.perf_counter()
            for group, start, idx, tgt in data.eval_batches(batch_size):
                idx, tgt = idx.to(device), tgt.to(device)
                # the random latent start depends only on the batch, so every r sees the same draws
                gen = torch.Generator(device=device).manual_seed(1234 + start)
                with autocast or contextlib.nullcontext():
                    logits = model(idx, n_no_grad=r, n_grad=0, generator=gen).logits.float()
                mask = tgt != IGNORE
                nats = torch.nn.functional.cross_entropy(logits[mask], tgt[mask], reduction="sum").item()
                sums = groups.setdefault(group, Counter())
                sums["exact"] += int(((logits.argmax(-1) == tgt) | ~mask).all(dim=1).sum())
                sums["sequences"] += idx.shape[0]
                total["nats"] += nats
                total["targets"] += int(mask.sum())
                if token_bytes is not None:
                    total["bytes"] += int(token_bytes[tgt[mask]].sum())
                n_tok += idx.numel()
            row = {"r": r, **data.eval_row(total, groups)}
            row["tokens_per_s"] = n_tok / max(time.perf_counter() - t0, 1e-9)
            rows.append(row)
            if on_row is not None:
                on_row(row)
    finally:
        model.train(was_training)
    return rows


def run_sweep(
    run: RunDir,
    rs: list[int] | None = None,
    step: int | None = None,
    device: str = "cpu",
    on_row=None,
    cancel: threading.Event | None = None,
    difficulties: list[int] | None = None,
) -> SweepResult:
    """Evaluate the checkpoint (latest complete one by default) at each r and save the result.

    `rs` defaults to powers of two up to 4 x r_mean. `difficulties` evaluates task levels other
    than the run's own, e.g. harder than any trained. A cancelled sweep keeps and saves the rows
    finished so far, marked incomplete.
    """
    from recurlab.checkpoint import load_model
    from recurlab.data import make_data
    from recurlab.devices import resolve_device

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
    rows = evaluate(model, data, rs, device, on_row=on_row, cancel=cancel)
    counts = dict(getattr(data, "heldout_counts", {}))
    result = SweepResult(run=run.name, step=ckpt.step, rows=rows, complete=len(rows) == len(rs), heldout=counts)
    if rows:
        result.path = save_sweep(run, result, rs, difficulties or cfg.data.difficulties, difficulties)
    return result
