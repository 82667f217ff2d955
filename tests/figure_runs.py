"""Small run directories for the figure tests (no tests here): synthetic metrics and sweeps, and
real latent traces of a tiny random model.

    root = make_figure_runs(tmp_path / "runs")    # "alpha" (everything), "beta" (metrics only), "gamma" (a text run's sweep)
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

from recurlab.rundir import RunDir, atomic_write_json

CONFIG = """profile: tiny
model: {n_embd: 32, n_head: 2, n_prelude: 1, n_core: 1, n_coda: 1, block_size: 32}
data: {source: task, task: addition, difficulties: [2, 3], eval_examples: 32}
train: {r_mean: 4, k: 2, batch_size: 16, max_steps: 120, eval_every: 20, eval_r: [1, 4]}
hardware: {device: cpu}
"""
SWEEP_RS = (1, 2, 4, 8, 16)


def _metrics(scale: float, steps: int) -> list[dict]:
    rows = []
    for s in range(1, steps + 1):
        # uneven logging: every step, then every third step after 60 (the EMA must weigh by steps)
        if s > 60 and s % 3:
            continue
        loss = scale * (0.5 + 3.0 * math.exp(-s / 30)) + 0.1 * math.sin(1.7 * s)
        rows.append({"kind": "train", "step": s, "time": 1000.0 + s, "loss": loss, "lr": 1e-3 * min(1, s / 10),
                     "tokens": 256 * s, "tokens_per_s": 2000 + 50 * math.cos(s), "grad_norm": 1 + 1 / s})
        if s % 20 == 0:
            for r, acc in ((1, 0.2), (4, 0.6)):
                rows.append({"kind": "eval", "step": s, "time": 1000.0 + s, "r": r, "loss": loss * (1.4 - acc),
                             "acc": min(1.0, acc * s / steps), "acc@2": acc, "acc@3": acc / 2, "tokens_per_s": 9000.0})
    return rows


def make_figure_runs(root: Path) -> Path:
    import torch

    from recurlab.engine import GenerateOptions, latent_trace, save_trace
    from test_engine_utils import random_model

    alpha = RunDir.create(root, "alpha", CONFIG)
    alpha.append_metrics(_metrics(1.0, 120))
    alpha.write_status(state="finished", step=120, max_steps=120, pid=None)
    beta = RunDir.create(root, "beta", CONFIG)
    beta.append_metrics(_metrics(0.8, 90))
    beta.write_status(state="stopped", step=90, max_steps=120, pid=None)

    gamma = RunDir.create(root, "gamma", CONFIG.replace("{source: task, task: addition, difficulties: [2, 3], eval_examples: 32}",
                                                         "{source: local, name: corpus.txt}"))
    gamma.write_status(state="finished", step=50, max_steps=50, pid=None)
    gamma.sweeps_dir.mkdir()
    text_rows = [{"r": r, "loss": 2.0 - 0.1 * r ** 0.5, "tokens_per_s": 500.0, "bpb": 0.9 - 0.05 * r ** 0.5} for r in (1, 2, 4, 8)]
    atomic_write_json(gamma.sweeps_dir / "step_00000050.json", {"run": "gamma", "step": 50, "rs": [1, 2, 4, 8],
                                                               "complete": False, "rows": text_rows})

    alpha.sweeps_dir.mkdir()
    rows = [{"r": r, "loss": 1.5 / r ** 0.5, "tokens_per_s": 9000.0 / r, "acc@2": min(1.0, 0.25 * r),
             "acc@3": min(1.0, 0.1 * r), "acc": min(1.0, 0.175 * r)} for r in SWEEP_RS]
    atomic_write_json(alpha.sweeps_dir / "step_00000120.json", {"run": "alpha", "step": 120, "rs": list(SWEEP_RS),
                                                               "complete": True, "rows": rows})
    harder = [{"r": r, "loss": 2.0 / r ** 0.3, "tokens_per_s": 9000.0, "acc@4": min(1.0, 0.05 * r), "acc": min(1.0, 0.05 * r)}
              for r in (1, 4, 16)]
    atomic_write_json(alpha.sweeps_dir / "step_00000120_levels_4.json", {"run": "alpha", "step": 120, "rs": [1, 4, 16],
                                                                         "complete": True, "rows": harder})

    write_eval(alpha)
    write_wavefront(alpha)
    torch.manual_seed(0)
    model, tok = random_model(1.0, seed=3)
    for name, prompt in (("short-a", "1+2="), ("long-a", "12+34="), ("long-b", "56+78=")):
        trace = latent_trace(model, tok, prompt, r=6, criterion="kl:1e-2", starts=3, init_scale=0.0,
                             generate=GenerateOptions(r=6, init_scale=0.0, max_new_tokens=3, stop_ids=()))
        save_trace(alpha, name, trace)
    return root


EVAL_RS = (1, 4, 16)


def write_eval(run: RunDir) -> None:
    """An evaluation as `recurlab eval` saves it: rows (task, r, metric, value, stderr, ...) and, per
    task and r, a histogram {iteration: tokens} of exit iterations."""
    rows, hists = [], {}
    for task, base in (("perm_l1", 0.6), ("perm_l4", 0.1)):
        for r in EVAL_RS:
            value = min(1.0, base * r ** 0.5)
            rows.append({"task": task, "r": r, "metric": "exact_match,none", "value": value, "stderr": 0.02 + 0.01 * r / 16,
                         "n": 50, "mean_iterations": None, "tokens": 100})
            hists.setdefault(task, {})[str(r)] = {str(i): (i * 7 + len(task)) % 11 for i in range(1, r + 1)}
    record = {"source": {"run": str(run.path), "model": None, "label": run.name, "checkpoint_step": 120},
              "rs": list(EVAL_RS), "tasks": ["perm_l1", "perm_l4"], "exit": "kl:5e-4", "settings": {"limit": 50},
              "time": 1000.0, "complete": True, "rows": rows, "histograms": hists, "name": "eval-20261130-150000"}
    (run.path / "evals").mkdir()
    atomic_write_json(run.path / "evals" / "eval-20261130-150000.json", record)


def write_wavefront(run: RunDir) -> None:
    """A wavefront in the parallel sampler's schema: per outer step the first generated position of
    the wavefront, each position's iterations so far, and how many of its first positions froze."""
    steps, first, iters = [], 0, []
    for step in range(1, 9):
        iters = [min(8, n + 2) for n in iters] + [2]  # two iterations a step, a new position each step
        frozen = sum(1 for n in iters if n >= 8)
        steps.append({"step": step, "first": first, "iterations": iters, "tokens": [3] * len(iters),
                      "texts": ["3"] * len(iters), "frozen": frozen})
        first, iters = first + frozen, iters[frozen:]
    record = {"version": 1, "kind": "wavefront", "created": 1000.0, "prompt": "12+34=", "r": 8,
              "sampler": "parallel:iters=2", "token_ids": [3] * first, "token_texts": ["3"] * first,
              "frozen_at": [], "iterations": [8] * first, "steps": steps,
              "summary": {"outer_steps": 8, "core_passes": 16, "passes_per_token": 4.0, "speedup_in_passes": 2.0}}
    (run.path / "wavefronts").mkdir()
    atomic_write_json(run.path / "wavefronts" / "wavefront-1.json", record)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG header."""
    head = Path(path).read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])
