"""Shared tiny models for the engine tests (no tests here).

    model, tok = trained_model()     # ~100 AdamW steps on 2-digit addition, cached per process
    model, tok = random_model(scale) # random init with weights scaled by `scale`
"""

from __future__ import annotations

import functools
import random

import torch

from recurlab.config import ModelConfig
from recurlab.model import RecurrentLM
from recurlab.tasks import CharVocab, get_task


def tiny_config() -> ModelConfig:
    return ModelConfig(vocab_size=len(CharVocab.default()), n_embd=64, n_head=4, n_prelude=1, n_core=2, n_coda=1,
                       block_size=64)


def random_model(scale: float = 1.0, seed: int = 0):
    torch.manual_seed(seed)
    model = RecurrentLM(tiny_config()).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    return model, CharVocab.default()


def encode(tok, text: str) -> list[int]:
    """Token ids as the engine feeds them: <bos> first where the vocabulary asks for it."""
    return ([tok.bos_id] if getattr(tok, "prepend_bos", False) else []) + tok.encode(text)


def addition_batch(tok: CharVocab, n: int, rng: random.Random, digits: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    task = get_task("addition")
    seqs = []
    for _ in range(n):
        ex = task.example(digits, 0, rng.randrange(10**6))
        seqs.append(encode(tok, ex.prompt + ex.answer) + [tok.eos_id])
    x = torch.tensor(seqs)
    return x[:, :-1], x[:, 1:]


@functools.lru_cache(maxsize=1)
def trained_model(steps: int = 100):
    """Trained with sampled r (1..6) so that depth matters and argmaxes differ across tokens."""
    torch.set_num_threads(1)
    model, tok = random_model(1.0, seed=1)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = random.Random(0)
    for _ in range(steps):
        x, y = addition_batch(tok, 24, rng)
        n = rng.randint(0, 4)
        loss = model(x, n_no_grad=n, n_grad=2, targets=y, init_scale=0.5).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model, tok
