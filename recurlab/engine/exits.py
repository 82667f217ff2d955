"""Zero-shot adaptive exit: decide per token when its latent state has converged.

    tracker = ExitTracker(parse_exit("kl:5e-4"))
    for i in range(r):
        s = model.core_step(...)
        if tracker.due(i + 1):
            done = tracker.update(s_flat, logits_flat if tracker.needs_logits else None)

Each check compares the current state (and its coda distribution) with the previous check's, so
with `check_every` c the criteria compare states c iterations apart. The first check only
records (the reference compares it with a uniform distribution, which in practice never exits
a token at its first iteration either). A disabled criterion (threshold 0) never fires, so
output equals fixed r.

`kl` is KL(p_{i-1} || p_i) with p_i the coda's distribution after iteration i, the direction of
the reference implementation (seal-rg/recurrent-pretraining, `generate_with_adaptive_compute`,
criterion "kl", threshold 5e-4) used for the paper's numbers; `kl-rev` is KL(p_i || p_{i-1}).

The `gate` criterion is Ouro's learned exit: after step k the model's gate gives lambda_k, the
exit probability is p_k = lambda_k * prod_{j<k} (1 - lambda_j), and a token exits at the first
step whose cumulative sum reaches the threshold (the last step takes the remainder). It needs
`gate` (the lambdas) in `update` instead of logits.
"""

from __future__ import annotations

import torch
from torch import Tensor

from recurlab.errors import InferenceError
from recurlab.options.generate import ExitCriterion


def check_exit_support(model, crit: ExitCriterion | None) -> None:
    """The gate criterion needs a model with a learned exit gate."""
    if crit is not None and crit.kind == "gate" and crit.enabled and not model.cfg.exit_gate:
        raise InferenceError("--exit gate:... needs a model with a learned exit gate (Ouro); this one has none: use e.g. kl:5e-4")


def log_softmax(logits: Tensor) -> Tensor:
    return logits.float().log_softmax(-1)


def kl_div(logp: Tensor, logq: Tensor) -> Tensor:
    """KL(p || q) over the last axis, from log-probabilities."""
    return (logp.exp() * (logp - logq)).sum(-1).clamp_min(0)


def entropy(logp: Tensor) -> Tensor:
    return -(logp.exp() * logp).sum(-1)


def relative_change(s: Tensor, prev: Tensor) -> Tensor:
    return (s - prev).float().norm(dim=-1) / s.float().norm(dim=-1).clamp_min(1e-12)


class NeedsOfCriterion:
    """What an exit check needs from a pass besides the state: shared by the one-sequence tracker and
    the depth-batching one (engine/depth_batch.py), whose rows sit at different iterations."""

    crit: ExitCriterion

    @property
    def needs_logits(self) -> bool:
        return self.crit.kind in ("kl", "kl-rev", "entropy", "argmax")

    @property
    def needs_gate(self) -> bool:
        return self.crit.kind == "gate"


class ExitTracker(NeedsOfCriterion):
    def __init__(self, crit: ExitCriterion):
        self.crit = crit
        self.prev_state: Tensor | None = None
        self.prev_logp: Tensor | None = None
        self.stable: Tensor | None = None
        self.cdf: Tensor | None = None  # gate: cumulative exit probability so far
        self.remaining: Tensor | None = None  # gate: probability of not having exited yet

    def due(self, done_iterations: int) -> bool:
        """Whether to check after this many iterations of the current token."""
        return self.crit.enabled and done_iterations % self.crit.check_every == 0

    def update(self, state: Tensor, logits: Tensor | None, done_iterations: int | None = None,
               gate: Tensor | None = None) -> Tensor:
        """state (N, d), logits (N, V) or None, gate (N,) lambdas for `gate` -> converged (N,) bool."""
        kind, thr = self.crit.kind, self.crit.threshold
        logp = log_softmax(logits) if logits is not None else None
        state = state.float()
        converged = torch.zeros(state.shape[0], dtype=torch.bool, device=state.device)
        first = self.prev_state is None
        if kind == "gate":
            if self.remaining is None:
                self.remaining = torch.ones(state.shape[0], device=state.device)
                self.cdf = torch.zeros(state.shape[0], device=state.device)
            lam = gate.float()
            self.cdf = self.cdf + lam * self.remaining
            self.remaining = self.remaining * (1 - lam)
            converged = self.cdf >= thr
        elif not first:
            if kind == "kl":  # KL(p_{i-1} || p_i): the reference implementation's (and the paper's) `kl`
                converged = kl_div(self.prev_logp, logp) < thr
            elif kind == "kl-rev":  # KL(p_i || p_{i-1}): the other direction (recurlab's `kl` before)
                converged = kl_div(logp, self.prev_logp) < thr
            elif kind == "entropy":
                converged = (entropy(logp) - entropy(self.prev_logp)).abs() < thr
            elif kind == "latent":
                converged = relative_change(state, self.prev_state) < thr
            elif kind == "cosine":
                converged = torch.nn.functional.cosine_similarity(state, self.prev_state, dim=-1) >= thr
            elif kind == "argmax":
                same = logp.argmax(-1) == self.prev_logp.argmax(-1)
                self.stable = torch.where(same, self.stable + 1, torch.zeros_like(self.stable))
                converged = self.stable >= int(thr)
        elif kind == "argmax":
            self.stable = torch.zeros(state.shape[0], dtype=torch.long, device=state.device)
        self.prev_state, self.prev_logp = state, logp
        if not self.crit.enabled:
            return torch.zeros_like(converged)
        if done_iterations is not None and done_iterations < self.crit.min_iterations:
            return torch.zeros_like(converged)
        return converged


def exit_pdf(lambdas: Tensor) -> Tensor:
    """(r, N) gate lambdas -> (r, N) exit distribution; the last step takes the remainder."""
    remaining = torch.cumprod(torch.cat([torch.ones_like(lambdas[:1]), 1 - lambdas[:-1]]), dim=0)
    pdf = lambdas * remaining
    pdf[-1] = remaining[-1]
    return pdf


def exit_iterations(crit: ExitCriterion, states: list[Tensor], logits: list[Tensor | None], r: int,
                    gates: list[Tensor] | None = None) -> list[int]:
    """Exit iteration per token for a full trajectory: states[i], logits[i] (and gates[i]) after
    i+1 iterations, each (N, ...). Tokens that never converge get r (or the criterion's max)."""
    tracker = ExitTracker(crit)
    limit = min(r, crit.max_iterations or r)
    n = states[0].shape[0]
    exits = torch.full((n,), limit, dtype=torch.long)
    done = torch.zeros(n, dtype=torch.bool)
    for i in range(limit):
        if tracker.due(i + 1):
            conv = tracker.update(states[i], logits[i] if tracker.needs_logits else None, i + 1,
                                  gates[i] if tracker.needs_gate else None).cpu()
            newly = conv & ~done
            exits[newly] = i + 1
            done |= newly
    return exits.tolist()
