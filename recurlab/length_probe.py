"""Is it length or compute? A run's held-out permutation problems made longer with identity
permutations, scored at several r.

    from recurlab.length_probe import padded, probe
    rows = probe("runs/cpu-demo", level=4, pads=[0, 4], rs=[8, 32])   # [{"pad": 0, "r": 8, "acc": ...}, ...]
    python -m recurlab.bench.length_probe runs/cpu-demo --level 4 --pads 0,4 --rs 8,32

Prepending `pad` identity permutations keeps the answer and the number of non-trivial steps and
makes the prompt as long as level + pad: a model whose accuracy drops with pad fails on longer
inputs, whatever the depth. The forward pass is the sweep's (the same fixed latent start).
"""

from __future__ import annotations

from pathlib import Path

import torch

from recurlab.checkpoint import load_model
from recurlab.config import run_config
from recurlab.data import IGNORE, encode_examples
from recurlab.rundir import RunDir
from recurlab.tasks import CharVocab, Example, get_task


def padded(task, examples: list, pad: int) -> list:
    """Each example with `pad` identity permutations prepended: same answer, longer prompt."""
    identity = "".join(map(str, range(task.n)))
    return [Example(".".join([identity] * pad + [ex.prompt.rstrip("=")]) + "=", ex.answer, ex.difficulty + pad)
            for ex in examples]


def probe(run_path: str, level: int, pads: list[int], rs: list[int], examples: int = 200) -> list[dict]:
    run = RunDir(Path(run_path))
    cfg = run_config(run)
    task = get_task(cfg.data.task)
    model, ckpt = load_model(run, None, "cpu")
    model.eval()
    base = task.heldout(level, examples, cfg.train.seed)
    rows = []
    for pad in pads:
        exs = padded(task, base, pad)
        idx, tgt = encode_examples(exs, CharVocab.default())
        for r in rs:
            with torch.no_grad():  # the sweep's fixed latent start
                logits = model(idx, n_no_grad=r, n_grad=0, generator=torch.Generator().manual_seed(1234)).logits
            right = ((logits.argmax(-1) == tgt) | (tgt == IGNORE)).all(dim=1)
            rows.append({"step": ckpt.step, "level": level, "pad": pad, "r": r, "examples": len(exs),
                         "acc": float(right.float().mean())})
    return rows
