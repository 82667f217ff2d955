"""Depth samplers: how many recurrences each training step runs, split into (no-grad, grad).

    n_no_grad, n_grad = sample_depth(cfg.train, step=120, seed=0, recurrent=True)

The draw depends only on (seed, step), so every data-parallel rank draws the same depth at a
given step (no rank waits on another) and a resumed run repeats the depths it would have used.
"""

from __future__ import annotations

import math

import numpy as np

from recurlab.config import TrainConfig


def effective_r_mean(cfg: TrainConfig, step: int) -> float:
    if cfg.sampler == "curriculum" and cfg.curriculum_steps > 0:
        frac = min(1.0, step / cfg.curriculum_steps)
        return 1.0 + (cfg.r_mean - 1.0) * frac
    return float(cfg.r_mean)


def sample_total(cfg: TrainConfig, step: int, seed: int) -> int:
    rng = np.random.default_rng([seed, step, 0x5EED])
    if cfg.sampler == "fixed":
        return cfg.r_mean
    if cfg.sampler == "uniform":
        return int(rng.integers(cfg.r_min, cfg.r_max + 1))
    # log-normal Poisson (Huginn): tau ~ LogNormal(log(r) - sigma^2/2, sigma), p = Poisson(tau) + 1
    r = effective_r_mean(cfg, step)
    tau = rng.lognormal(math.log(r) - cfg.sigma**2 / 2, cfg.sigma)
    return int(rng.poisson(tau)) + 1


def sample_depth(cfg: TrainConfig, step: int, seed: int, recurrent: bool = True) -> tuple[int, int]:
    """(iterations without gradient, iterations with gradient) for this step."""
    if not recurrent:
        return 0, 1
    p = sample_total(cfg, step, seed)
    return max(p - cfg.k, 0), min(cfg.k, p)
