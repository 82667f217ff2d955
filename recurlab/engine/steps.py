"""One cached model pass over new columns, driving the model's public steps.

    out = run_pass(model, cache, ids, r=16, init_scale=0.0)               # prefill or verify
    out = run_pass(model, cache, ids[:, -1:], r=16, exit=crit, s0=prev)   # one decode step

A pass runs the prelude once, `r` core iterations over all new columns, and the coda once on the
final state. With an exit criterion (single-column passes only) each row stops iterating when it
converges: its state is frozen, its core cache writes are masked, and the cache copies its last
entry into the slots of the iterations it skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from recurlab.engine.cache import KVCache
from recurlab.engine.exits import ExitTracker
from recurlab.engine.options import ExitCriterion


@dataclass
class PassOutput:
    logits: Tensor  # (B, T, V) from each row's final state
    state: Tensor  # (B, T, d) final states
    iterations: Tensor  # (B,) iterations each row ran


@torch.inference_mode()
def run_pass(
    model,
    cache: KVCache,
    ids: Tensor,
    r: int,
    *,
    init_scale: float | None = None,
    generator: torch.Generator | None = None,
    s0: Tensor | None = None,
    exit: ExitCriterion | None = None,
    skip: Tensor | None = None,
) -> PassOutput:
    """`skip` (B,) marks rows that need no result (finished sequences): they do not iterate."""
    B, T = ids.shape
    cache.begin(T)
    rope = model.rope(cache.positions())
    e = model.embed(ids, rope, cache)
    s = s0 if s0 is not None else model.init_state(e, init_scale, generator)
    done = skip.clone() if skip is not None else torch.zeros(B, dtype=torch.bool, device=ids.device)
    exited = torch.zeros_like(done)
    iterations = torch.full((B,), r, dtype=torch.long, device=ids.device)
    tracker = ExitTracker(exit) if exit is not None and exit.enabled and T == 1 else None
    any_done = skip is not None and bool(skip.any())  # a Python flag: no device sync per iteration
    for i in range(r):
        cache.active = ~done if any_done else None
        s_new = model.core_step(s, e, rope, cache, i)
        s = torch.where(done[:, None, None], s, s_new) if any_done else s_new
        if tracker is not None and i + 1 < r and tracker.due(i + 1):
            logits = model.decode(s, rope, cache) if tracker.needs_logits else None
            gate = model.exit_lambda(s[:, -1]) if tracker.needs_gate else None
            conv = tracker.update(s[:, -1], logits[:, -1] if logits is not None else None, i + 1, gate)
            newly = conv & ~done
            if bool(newly.any()):
                iterations[newly] = i + 1
                cache.finish(newly, i + 1)
                exited |= newly
                done |= newly
                any_done = True
                if bool(done.all()):
                    break
    cache.active = None
    # tokens that ran all r iterations still leave slots empty when other tokens may run longer
    cache.finish(~exited, r)
    logits = model.decode(s, rope, cache)
    cache.commit()
    return PassOutput(logits=logits, state=s, iterations=iterations)
