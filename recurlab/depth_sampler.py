"""Depth samplers: how many recurrences each training step runs, split into (no-grad, grad).

    n_no_grad, n_grad = sample_depth(cfg.train, step=120, seed=0, recurrent=True)
    n_no_grad, n_grad = sample_depth(cfg.train, step=120, seed=0, level=3)   # with train.depth_per_level > 0
    n, k = progressive_split(n_no_grad + n_grad, cfg.train.k, step=120, seed=0)

With `depth_per_level` > 0 each task level draws its own depth around depth_per_level * level
(Fan et al. 2024: the iteration count tied to the problem size); the draw then depends on the
level too. The draw depends only on (seed, step[, level]), so every data-parallel rank draws the same depth at a
given step (no rank waits on another) and a resumed run repeats the depths it would have used.
"""

from __future__ import annotations

import math

import numpy as np

from recurlab.config import TrainConfig


def target_r(cfg: TrainConfig, level: int | None = None) -> float:
    """The mean depth the sampler aims at: r_mean, or depth_per_level * level when tied to the level."""
    if cfg.depth_per_level and level is not None:
        return max(1.0, cfg.depth_per_level * level)
    return float(cfg.r_mean)


def effective_r_mean(cfg: TrainConfig, step: int, level: int | None = None) -> float:
    r = target_r(cfg, level)
    if cfg.sampler == "curriculum" and cfg.curriculum_steps > 0:
        frac = min(1.0, step / cfg.curriculum_steps)
        return 1.0 + (r - 1.0) * frac
    return r


def sample_total(cfg: TrainConfig, step: int, seed: int, level: int | None = None) -> int:
    tied = bool(cfg.depth_per_level) and level is not None
    rng = np.random.default_rng([seed, step, 0x5EED, level] if tied else [seed, step, 0x5EED])
    if cfg.sampler == "fixed":
        return max(1, round(target_r(cfg, level))) if tied else cfg.r_mean
    if cfg.sampler == "uniform":
        return int(rng.integers(cfg.r_min, cfg.r_max + 1))
    # log-normal Poisson (Huginn): tau ~ LogNormal(log(r) - sigma^2/2, sigma), p = Poisson(tau) + 1
    r = effective_r_mean(cfg, step, level)
    tau = rng.lognormal(math.log(r) - cfg.sigma**2 / 2, cfg.sigma)
    return int(rng.poisson(tau)) + 1


def sample_depth(cfg: TrainConfig, step: int, seed: int, recurrent: bool = True,
                 level: int | None = None) -> tuple[int, int]:
    """(iterations without gradient, iterations with gradient) for this step (and task level)."""
    if not recurrent:
        return 0, 1
    p = sample_total(cfg, step, seed, level)
    return max(p - cfg.k, 0), min(cfg.k, p)


def progressive_split(total: int, k: int, step: int, seed: int, level: int | None = None) -> tuple[int, int]:
    """The progressive loss's depths (Bansal et al. 2022): n ~ U{0..total-1} iterations without
    gradient from the random start, then m ~ U{1..min(k, total-n)} with gradient, so the core
    learns to improve whatever partial state it is handed rather than a fixed iteration schedule."""
    rng = np.random.default_rng([seed, step, 0xB4C, level or 0])  # levels start at 1
    n = int(rng.integers(0, total))
    m = int(rng.integers(1, min(k, total - n) + 1))
    return n, m
