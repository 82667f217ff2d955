"""Training and held-out data for the embedded tasks, as token batches.

    data = make_data(cfg, run)                        # TaskData, or TextData for text sources
    idx, targets = data.train_batch(step, n=64)       # deterministic in (seed, step): resumes exactly
    rows = recurlab.heldout.evaluate_heldout(model, data, rs=[1, 4, 8], device="cpu")

A sequence is <bos> prompt answer <eos>; only the answer and <eos> are supervised (targets are
-100 elsewhere), so every answer position carries a loss. Exact match under teacher forcing
(every answer position's argmax right) equals exact match of greedy decoding.
"""

from __future__ import annotations

import random

import torch

from recurlab.config import RunConfig
from recurlab.rundir import RunDir, atomic_write_text
from recurlab.tasks import CharVocab, Example, check_levels, get_task

IGNORE = -100


def encode_examples(examples: list[Example], vocab: CharVocab) -> tuple[torch.Tensor, torch.Tensor]:
    seqs, starts = [], []
    for ex in examples:
        prompt = [vocab.bos_id] + vocab.encode(ex.prompt)
        seqs.append(prompt + vocab.encode(ex.answer) + [vocab.eos_id])
        starts.append(len(prompt))
    width = max(len(s) for s in seqs) - 1
    idx = torch.full((len(seqs), width), vocab.pad_id, dtype=torch.long)
    targets = torch.full((len(seqs), width), IGNORE, dtype=torch.long)
    for i, (s, start) in enumerate(zip(seqs, starts)):
        idx[i, : len(s) - 1] = torch.tensor(s[:-1])
        targets[i, start - 1 : len(s) - 1] = torch.tensor(s[start:])
    return idx, targets


class TaskData:
    kind = "task"

    def __init__(self, cfg: RunConfig, run: RunDir | None = None):
        self.cfg = cfg
        self.task = get_task(cfg.data.task)
        self.tokenizer = CharVocab.default()
        self.levels = sorted(cfg.data.train_difficulties or cfg.data.difficulties)
        self.eval_levels = sorted(cfg.data.difficulties)
        check_levels(self.task, self.eval_levels)
        # distinct prompts, so a small level has fewer than eval_examples (heldout_counts says how many)
        self._heldout = {d: self.task.heldout(d, cfg.data.eval_examples, cfg.train.seed) for d in self.eval_levels}
        self.heldout_counts = {d: len(exs) for d, exs in self._heldout.items()}
        if run is not None and not run.vocab_path.exists():
            atomic_write_text(run.vocab_path, self.tokenizer.to_json())

    def train_examples(self, step: int, n: int, offset: int = 0) -> list[Example]:
        seed = self.cfg.train.seed
        out = []
        for i in range(offset, offset + n):
            level = self.levels[(step * 7919 + i) % len(self.levels)]
            ex = self.task.example(level, seed, step * 1_000_003 + i)
            pad_to = self.cfg.data.identity_pad_to
            if pad_to:  # a random length between the level's own and pad_to permutations
                rng = random.Random(f"pad/{seed}/{step}/{i}")
                ex = self.task.pad_with_identities(ex, rng.randint(level, max(level, pad_to)), rng)
            out.append(ex)
        return out

    def train_batch(self, step: int, n: int, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequences offset..offset+n of the global batch of `step` (ranks take disjoint slices)."""
        return encode_examples(self.train_examples(step, n, offset), self.tokenizer)

    def heldout(self, difficulty: int) -> list[Example]:
        return self._heldout[difficulty]

    # ---- held-out evaluation (the loop is recurlab.heldout.evaluate_heldout) -----------------------
    token_bytes = None  # text runs weigh targets by bytes; tasks score exact matches instead

    def eval_batches(self, batch_size: int | None = None):
        """(level, offset within the level, inputs, targets) for every held-out batch."""
        batch_size = batch_size or 256
        for d in self.eval_levels:
            exs = self._heldout[d]
            for b in range(0, len(exs), batch_size):
                idx, tgt = encode_examples(exs[b : b + batch_size], self.tokenizer)
                yield d, b, idx, tgt

    def eval_row(self, total, groups) -> dict:
        """Exact match per level, the loss per supervised token, and the mean accuracy over levels."""
        row = {f"acc@{d}": groups[d]["exact"] / groups[d]["sequences"] for d in self.eval_levels}
        row["loss"] = total["nats"] / max(total["targets"], 1)
        row["acc"] = sum(row[f"acc@{d}"] for d in self.eval_levels) / len(self.eval_levels)
        return row


def make_data(cfg: RunConfig, run: RunDir | None = None):
    if cfg.data.source == "task":
        return TaskData(cfg, run)
    from recurlab.text.data import TextData  # numpy and tokenizers: loaded only when this runs

    return TextData(cfg, run)
