"""One cached model pass over new columns, driving the model's public steps.

    out = run_pass(model, cache, ids, r=16, init_scale=0.0)               # prefill or verify
    out = run_pass(model, cache, ids[:, -1:], r=16, exit=crit, s0=prev)   # one decode step
    out = run_pass(model, cache, ids[:, -1:], r=16, compiled=core)        # its core compiled

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
from recurlab.engine.compiled import CompiledCore
from recurlab.engine.exits import ExitTracker
from recurlab.options.generate import ExitCriterion


def position_noise(seed: int, positions: Tensor, shape: torch.Size) -> Tensor:
    """A standard normal (B, T, d) draw whose row for a token depends only on (seed, position)."""
    B, T, d = shape
    pos = positions if positions.dim() == 2 else positions[None].expand(B, T)
    pos = pos.cpu()
    table = {}
    for p in pos.unique().tolist():
        gen = torch.Generator().manual_seed((seed * 1_000_003 + p) % (2**63))
        table[p] = torch.randn(d, generator=gen)
    return torch.stack([torch.stack([table[p] for p in row]) for row in pos.tolist()])


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
    start_seed: int | None = None,
    s0: Tensor | None = None,
    exit: ExitCriterion | None = None,
    skip: Tensor | None = None,
    compiled: CompiledCore | None = None,
) -> PassOutput:
    """`skip` (B,) marks rows that need no result (finished sequences): they do not iterate.
    `start_seed` draws each column's random start from (seed, its position) instead of from
    `generator`, so the same token gets the same start in a prefill, a decode step, a draft or a
    verify pass. `compiled` runs the core iterations of a one-column, one-row pass through a
    compiled graph (recurlab.engine.compiled); other passes ignore it."""
    B, T = ids.shape
    cache.begin(T)
    rope = model.rope(cache.positions())
    core_step = compiled.begin(cache, rope) if compiled is not None and compiled.usable(cache, ids) else model.core_step
    e = model.embed(ids, rope, cache)
    if s0 is not None:
        s = s0
    elif start_seed is not None and (model.cfg.init_scale if init_scale is None else init_scale) != 0:
        s = model.init_state(e, init_scale, noise=position_noise(start_seed, cache.positions(), e.shape))
    elif start_seed is not None:  # a zero start: no per-position draws to make on every decode step
        s = model.init_state(e, 0.0)
    else:
        s = model.init_state(e, init_scale, generator)
    done = skip.clone() if skip is not None else torch.zeros(B, dtype=torch.bool, device=ids.device)
    exited = torch.zeros_like(done)
    iterations = torch.full((B,), r, dtype=torch.long, device=ids.device)
    tracker = ExitTracker(exit) if exit is not None and exit.enabled and T == 1 else None
    any_done = skip is not None and bool(skip.any())  # a Python flag: no device sync per iteration
    for i in range(r):
        cache.active = ~done if any_done else None
        s_new = core_step(s, e, rope, cache, i)
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
