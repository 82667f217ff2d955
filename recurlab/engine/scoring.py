"""Score continuations: log-probabilities of given tokens after given contexts, at a chosen r.

    scores = score_continuations(model, [(ctx_ids, cont_ids), ...], r=8)            # one cached pass
    scores = score_continuations(model, pairs, r=32, exit=parse_exit("kl:5e-4"))   # per-token exit
    scores[0].logprob, scores[0].greedy, scores[0].iterations    # iterations per scored token

Rows are left-padded into one batch and run through the engine's cached pass (`run_pass`), the
same core step as generation. Without an exit rule the whole sequence is one pass of r core
iterations. With one, the context is prefilled at r (as generation prefills a prompt) and the
continuation is fed one column at a time, teacher-forced, each column stopping when the exit
rule fires, so a scored token uses exactly the iterations that generating it would have used.

The random latent start of each token is drawn from (seed, its position), as generation draws
it, so a request scores the same alone or in any batch, and scoring a generated continuation
reproduces the distributions that generated it, at any init scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recurlab.engine.cache import KVCache
from recurlab.engine.cached_pass import run_pass
from recurlab.options.generate import ExitCriterion


@dataclass
class ContinuationScore:
    logprob: float  # sum over the continuation's tokens
    greedy: bool  # every continuation token is the argmax of its position
    iterations: list[int]  # core iterations behind each scored token's distribution


def _place(rows: list[list[int]], columns: list[int], width: int, pad: int, device) -> torch.Tensor:
    """Token rows placed from the given first column in a (B, width) tensor of `pad`."""
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    for b, (row, col) in enumerate(zip(rows, columns)):
        if row:
            ids[b, col:col + len(row)] = torch.tensor(row)
    return ids.to(device)


def score_continuations(
    model,
    pairs: list[tuple[list[int], list[int]]],
    r: int,
    *,
    exit: ExitCriterion | None = None,
    kv_budget: int | None = None,
    init_scale: float | None = None,
    seed: int = 0,
    pad_id: int = 0,
) -> list[ContinuationScore]:
    """Each pair is (context ids, continuation ids), the context non-empty, the continuation too."""
    for ctx, cont in pairs:
        if not ctx or not cont:
            raise ValueError("score_continuations needs a non-empty context and continuation per pair")
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    start_args = dict(init_scale=init_scale, start_seed=seed)
    inputs = [(ctx + cont)[:-1] for ctx, cont in pairs]  # position t predicts token t + 1
    if exit is not None and exit.enabled:
        return _score_with_exit(model, pairs, inputs, r, exit, kv_budget, pad_id, device, dtype, start_args)

    B, T = len(pairs), max(len(x) for x in inputs)
    start = [T - len(x) for x in inputs]
    ids = _place(inputs, start, T, pad_id, device)
    cache = KVCache(model.cfg, B, T, r, kv_budget, device, dtype, torch.tensor(start))
    out = run_pass(model, cache, ids, r, **start_args)
    longest = max(len(cont) for _, cont in pairs)
    logp = out.logits[:, T - longest:].float().log_softmax(-1)
    scores = []
    for b, (_, cont) in enumerate(pairs):
        rows = logp[b, longest - len(cont):]
        target = torch.tensor(cont, device=device)
        lp = rows.gather(-1, target[:, None]).squeeze(-1)
        greedy = bool((rows.argmax(-1) == target).all())
        scores.append(ContinuationScore(float(lp.sum()), greedy, [r] * len(cont)))
    return scores


def _score_with_exit(model, pairs, inputs, r, crit: ExitCriterion, kv_budget, pad_id, device, dtype, start_args):
    """Prefill each context but its last token at r, then one teacher-forced column per scored token."""
    B = len(pairs)
    prefix = [len(ctx) - 1 for ctx, _ in pairs]
    steps = [len(cont) for _, cont in pairs]
    P, C = max(prefix), max(steps)
    start = [P - p for p in prefix]  # left padding so every row's first scored column is P
    ids = _place(inputs, start, P + C, pad_id, device)
    decode_r = crit.max_iterations or r  # as generation: a token may run up to the rule's max
    cache = KVCache(model.cfg, B, P + C, max(r, decode_r), kv_budget, device, dtype, torch.tensor(start))
    if P > 0:
        run_pass(model, cache, ids[:, :P], r, **start_args)
    logps = torch.zeros(B, dtype=torch.float64)
    greedy = [True] * B
    iterations: list[list[int]] = [[] for _ in range(B)]
    for j in range(C):
        col = P + j
        skip = torch.tensor([j >= n for n in steps], device=device)
        out = run_pass(model, cache, ids[:, col:col + 1], decode_r, exit=crit, skip=skip, **start_args)
        logp = out.logits[:, -1].float().log_softmax(-1)
        its = out.iterations.tolist()
        for b, (_, cont) in enumerate(pairs):
            if j >= steps[b]:
                continue
            logps[b] += float(logp[b, cont[j]])
            greedy[b] = greedy[b] and int(logp[b].argmax()) == cont[j]
            iterations[b].append(its[b])
    return [ContinuationScore(float(logps[b]), greedy[b], iterations[b]) for b in range(B)]
