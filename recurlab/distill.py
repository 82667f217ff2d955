"""Distillation toward a deeper pass: a KL term that pulls a shallow model's next-token
distribution toward a deep one's, beside the usual cross-entropy.

    # a separate student (its own profile) toward a trained run at r = 16
    recurlab train --profile cpu train.r_mean=2 train.k=2 train.distill_from=runs/cpu-demo train.distill_r=16
    # self-distillation: the model at a small sampled r toward itself at r = 16 (no gradient there)
    recurlab train --profile cpu train.self_distill_weight=0.5 train.self_distill_small=2 train.self_distill_large=16

Two modes, one loss (`kl_to_teacher`):
- a teacher run: its weights are frozen; the student's objective is
  (1 - w) * CE + w * KL(teacher at distill_r || student at its sampled depth), w = train.distill_weight;
- self-distillation: the step's usual loss plus w * KL(model at large r || model at r ~ U{1..small}),
  w = train.self_distill_weight, where the deep pass runs under no_grad (a stop-gradient), from the
  same latent start as the shallow one.
The KL is taken over the positions that have a target (the answer tokens of a task), in nats.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from recurlab.checkpoint import load_weights
from recurlab.config import RunConfig, run_config
from recurlab.errors import ConfigError
from recurlab.model import RecurrentLM
from recurlab.rundir import RunDir, init_checkpoint


def kl_to_teacher(student_logits: Tensor, teacher_logits: Tensor, targets: Tensor) -> Tensor:
    """Mean over target positions (targets != -100) of KL(p_teacher || p_student), float32, in nats.

    The gradient flows into the student's logits only: the teacher's are detached."""
    mask = targets != -100
    if not bool(mask.any()):
        return student_logits.float().sum() * 0.0  # no target: a zero that keeps the graph
    log_s = F.log_softmax(student_logits[mask].float(), dim=-1)
    log_t = F.log_softmax(teacher_logits.detach()[mask].float(), dim=-1)
    return (log_t.exp() * (log_t - log_s)).sum(-1).mean()


def deep_logits(model: torch.nn.Module, idx: Tensor, r: int, generator: torch.Generator | None) -> Tensor:
    """The model's logits after r iterations, with no gradient anywhere (the stop-gradient side)."""
    with torch.no_grad():
        return model(idx, r, 0, generator=generator).logits


def self_distill_depth(small: int, step: int, seed: int) -> int:
    """The shallow pass's iterations this step: uniform on 1..small, reproducible from (seed, step)."""
    rng = np.random.default_rng([seed, step, 0x5D1])
    return int(rng.integers(1, small + 1))


@dataclass
class Teacher:
    """A frozen model from another run, run at a fixed depth."""

    model: RecurrentLM
    r: int

    def logits(self, idx: Tensor, generator: torch.Generator | None) -> Tensor:
        return deep_logits(self.model, idx, self.r, generator)


def teacher_run(spec: str) -> tuple[RunDir, Path]:
    """The run directory and checkpoint named by train.distill_from (a run, or one of its checkpoints)."""
    ckpt = init_checkpoint(spec, key="train.distill_from")
    path = Path(spec)
    run = RunDir(path if (path / "run.yaml").exists() else ckpt.parent.parent)
    if not run.config_path.is_file():
        raise ConfigError(f"train.distill_from: {spec} is a checkpoint outside a run directory; "
                          f"name the run directory so that the teacher's config can be read")
    return run, ckpt


def check_teacher(cfg: RunConfig) -> RunConfig:
    """Refuse a teacher whose tokens are not the student's; returns the teacher's config."""
    run, _ = teacher_run(cfg.train.distill_from)
    tcfg = run_config(run)
    if tcfg.model.vocab_size != cfg.model.vocab_size:
        raise ConfigError(f"train.distill_from: the teacher's vocabulary has {tcfg.model.vocab_size} tokens and "
                          f"the student's {cfg.model.vocab_size}; distill between models of one tokenizer")
    same_task = cfg.data.source == "task" and tcfg.data.source == "task" and tcfg.data.task == cfg.data.task
    if not same_task and not (cfg.data.source != "task" and cfg.data.tokenizer):
        raise ConfigError(f"train.distill_from: the teacher was trained on {tcfg.data.source}:{tcfg.data.task or tcfg.data.name} "
                          f"and the student on {cfg.data.source}:{cfg.data.task or cfg.data.name}; use the teacher's "
                          f"task, or for text set data.tokenizer to the teacher's tokenizer.json")
    return tcfg


def load_teacher(cfg: RunConfig, device: torch.device) -> Teacher:
    run, ckpt = teacher_run(cfg.train.distill_from)
    tcfg = run_config(run)
    model = RecurrentLM(tcfg.model)
    load_weights(model, ckpt)
    model.to(device).eval().requires_grad_(False)
    return Teacher(model, cfg.train.distill_r or tcfg.train.r_mean)
