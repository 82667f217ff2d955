"""Next-token choice: greedy, or sampling with temperature, top-k and top-p.

    probs = next_token_probs(logits, temperature=0.8, top_k=20, top_p=0.95)   # (N, V), None if greedy
    ids = choose(logits, opts, generator)                                      # (N,)
"""

from __future__ import annotations

import torch
from torch import Tensor


def next_token_probs(logits: Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """The distribution sampling draws from, after temperature, top-k and top-p filtering."""
    logits = logits.float() / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        drop = (sorted_p.cumsum(-1) - sorted_p) >= top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def choose(logits: Tensor, temperature: float, top_k: int, top_p: float, generator: torch.Generator | None) -> Tensor:
    """logits (N, V) -> token ids (N,)."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = next_token_probs(logits, temperature, top_k, top_p)
    return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(logits.device)
