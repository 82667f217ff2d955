"""The held-out evaluation loop: a model's loss and scores at each r, which training runs
periodically and a sweep of r runs on a checkpoint (recurlab.engine.run_sweep).

    rows = evaluate_heldout(model, data, rs=[1, 4], device="cpu")   # [{"r": 1, "loss": ..., "acc": ...}, ...]

It runs the model's own forward (the same core step as everything else) on the held-out batches a
data object gives (TaskData: per difficulty; TextData: validation windows) and lets the data object
turn the sums into a row: task runs get `acc@<level>` and `acc`, text runs `bpb`. Every row has
`r`, `loss` and `tokens_per_s`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter

import torch

from recurlab.data import IGNORE


@torch.no_grad()
def evaluate_heldout(model, data, rs: list[int], device, autocast=None, on_row=None, cancel: threading.Event | None = None,
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
