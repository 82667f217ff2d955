"""Real text as token batches: the text counterpart of recurlab.data.TaskData.

    data = TextData(cfg, run)                   # run given on rank 0: writes run/tokenizer.json
    idx, targets = data.train_batch(step, n=64) # deterministic in (seed, step): resumes exactly
    rows = recurlab.heldout.evaluate_heldout(model, data, rs=[1, 4, 8], device="cpu")   # r, loss, bpb, tokens_per_s

Sources: local files and hub datasets with streaming off are tokenized once into a memory-mapped
cache (recurlab.text.cache) under data.cache_dir, keyed by the files' paths, sizes and mtimes (or
the hub dataset's fingerprint) and the tokenizer's hash; training sequences are windows of
seq_len + 1 ids at multiples of seq_len, cycled in a seeded random order per epoch. Streamed hub
datasets are tokenized on the fly in a background process (recurlab.text.stream).

Tokenizer, first found of: the run's tokenizer.json (resume, sweeps), data.tokenizer (a path),
a BPE trained earlier on the same sample (cached under data.cache_dir), or a new byte-level BPE
trained on the first data.tokenizer_sample_docs documents with data.tokenizer_vocab entries.
The model's embedding must hold every id: a tokenizer larger than model.vocab_size is a
DataError that names both numbers; a smaller one (a sample too small to learn every merge) leaves
the remaining embedding rows unused.

Validation: cached sources hold out every round(1/val_fraction)-th document; streamed sources hold
out their first documents, enough for data.eval_examples sequences. Evaluation packs the held-out
ids into at most data.eval_examples sequences of seq_len and reports the mean loss over every
target (end-of-text included) and bits per byte = total nats / ln 2 / UTF-8 bytes of the targets.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from recurlab.config import RunConfig
from recurlab.errors import DataError
from recurlab.rundir import RunDir
from recurlab.text import sources
from recurlab.text.bpe import BPETokenizer
from recurlab.text.cache import cached_corpus
from recurlab.text.stream import StreamFeed

IGNORE = -100


def cache_root(cfg: RunConfig) -> Path:
    return Path(cfg.data.cache_dir or os.path.join("~", ".cache", "recurlab")).expanduser()


class TextData:
    kind = "text"

    def __init__(self, cfg: RunConfig, run: RunDir | None = None):
        self.cfg = cfg
        d = cfg.data
        self.where = sources.describe(d)
        self.root = cache_root(cfg)
        self.streaming = d.source == "hub" and d.streaming
        self._rows = None
        self._feed = None
        if d.source == "local":
            builder, files = sources.local_files(d.name)
            self.key = sources.source_key(d, {"builder": builder, "files": sources.files_fingerprint(files)})
        elif self.streaming:
            self.key = sources.source_key(d, {"streaming": True})
        else:
            self._rows = self._open()
            self.key = sources.source_key(d, {"fingerprint": getattr(self._rows, "_fingerprint", "")})
        if d.seq_len > cfg.model.block_size:
            raise DataError(f"data.seq_len ({d.seq_len}) exceeds model.block_size ({cfg.model.block_size}); "
                            f"lower data.seq_len or raise model.block_size")
        self.tokenizer = self._tokenizer(run)
        if len(self.tokenizer) > cfg.model.vocab_size:
            raise DataError(f"tokenizer {self.tokenizer.source} has {len(self.tokenizer)} tokens but model.vocab_size is "
                            f"{cfg.model.vocab_size}; set model.vocab_size={len(self.tokenizer)}")
        if run is not None and not run.tokenizer_path.exists():
            self.tokenizer.save(run.tokenizer_path)
        self.token_bytes = torch.from_numpy(self.tokenizer.token_bytes())
        if self.streaming:
            val, skip = self._stream_head()
            self._feed = StreamFeed(d, self.tokenizer, skip_docs=skip, seed=cfg.train.seed)
            self.train_tokens = None
        else:
            tok_key = f"{self.key}-{self.tokenizer.hash()}-v{d.val_fraction}"
            corpus, self.cache_hit = cached_corpus(self.root, tok_key, self._texts, self.tokenizer, d.val_fraction,
                                                   self.where)
            self.train_tokens, val = corpus.train, corpus.val
            self.meta = corpus.meta
            if len(self.train_tokens) < d.seq_len + 1:
                raise DataError(f"{self.where}: the training split has {len(self.train_tokens)} tokens, fewer than "
                                f"data.seq_len + 1 = {d.seq_len + 1}; use more text or a smaller data.seq_len")
            self.n_seq = math.ceil(len(self.train_tokens) / d.seq_len)
        self.val_idx, self.val_targets = self.pack_eval(np.asarray(val, dtype=np.int64))
        self._perm_epoch, self._perm = -1, None

    # ---- sources and tokenizer ------------------------------------------------------------
    def _open(self):
        rows, _ = sources.open_rows(self.cfg.data, streaming=self.streaming)
        return rows

    def _texts(self, limit: int = 0):
        rows = self._rows if self._rows is not None else self._open()
        return sources.iter_texts(rows, self.cfg.data, self.where, limit)

    def _tokenizer(self, run: RunDir | None) -> BPETokenizer:
        d = self.cfg.data
        if run is not None and run.tokenizer_path.exists():
            return BPETokenizer.load(run.tokenizer_path)
        if d.tokenizer:
            if not Path(d.tokenizer).expanduser().is_file():
                raise DataError(f"data.tokenizer={d.tokenizer}: no such file; point it at a tokenizer.json or leave it empty")
            return BPETokenizer.load(Path(d.tokenizer).expanduser())
        path = self.root / "tokenizers" / f"{self.key}-bpe{d.tokenizer_vocab}-s{d.tokenizer_sample_docs}.json"
        if path.exists():
            return BPETokenizer.load(path)
        sample = list(self._texts(limit=d.tokenizer_sample_docs))
        if not sample:
            raise sources.empty_error(self.where, d)
        tok = BPETokenizer.train(sample, d.tokenizer_vocab)
        path.parent.mkdir(parents=True, exist_ok=True)
        tok.save(path)
        return tok

    def _stream_head(self) -> tuple[np.ndarray, int]:
        """Validation ids from the stream's first documents, and how many documents they took."""
        d = self.cfg.data
        budget = d.eval_examples * d.seq_len + 1
        parts, n_tok, n_rows = [], 0, 0
        get = sources.text_of(d, self.where)
        # count rows, not texts: the worker skips this many rows of the same stream
        for row in self._open():
            n_rows += 1
            text = get(row)
            if not text or not text.strip():
                continue
            ids = self.tokenizer.encode(text) + [self.tokenizer.eos_id]
            parts.append(np.asarray(ids, dtype=np.int64))
            n_tok += len(ids)
            if n_tok >= budget:
                break
        if not parts:
            raise sources.empty_error(self.where, d)
        return np.concatenate(parts), n_rows

    # ---- packing ------------------------------------------------------------------------
    def pack_eval(self, ids: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Held-out ids as (at most eval_examples) rows of seq_len inputs and their next-token targets."""
        d = self.cfg.data
        L = d.seq_len
        n = min(d.eval_examples, max(1, math.ceil((len(ids) - 1) / L)))
        idx = torch.full((n, L), self.tokenizer.pad_id, dtype=torch.long)
        tgt = torch.full((n, L), IGNORE, dtype=torch.long)
        for j in range(n):
            window = torch.from_numpy(ids[j * L : j * L + L + 1])
            k = len(window) - 1
            if k <= 0:
                break
            idx[j, :k], tgt[j, :k] = window[:-1], window[1:]
        return idx, tgt

    def _order(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.cfg.train.seed, epoch]).permutation(self.n_seq)
            self._perm_epoch = epoch
        return self._perm

    def train_windows(self, first: int, n: int) -> np.ndarray:
        """Packed training sequences first..first+n-1 (global numbers), (n, seq_len + 1) int64."""
        if self._feed is not None:
            return self._feed.get(first, n)
        L, ids = self.cfg.data.seq_len, self.train_tokens
        out = np.empty((n, L + 1), dtype=np.int64)
        for i in range(n):
            epoch, j = divmod(first + i, self.n_seq)
            start = int(self._order(epoch)[j]) * L
            end = start + L + 1
            if end <= len(ids):
                out[i] = ids[start:end]
            else:  # the last window wraps to the corpus start, so no token is left out
                out[i] = np.concatenate([ids[start:], ids[: end - len(ids)]])
        return out

    def train_batch(self, step: int, n: int, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequences offset..offset+n of the global batch of `step` (ranks take disjoint slices)."""
        first = step * self.cfg.train.batch_size + offset
        w = torch.from_numpy(self.train_windows(first, n))
        return w[:, :-1].contiguous(), w[:, 1:].contiguous()

    # ---- held-out evaluation (the loop is recurlab.heldout.evaluate_heldout) -------------------
    def eval_batches(self, batch_size: int | None = None):
        """(None, offset, inputs, targets) for every validation batch."""
        batch_size = batch_size or 64
        for b in range(0, len(self.val_idx), batch_size):
            yield None, b, self.val_idx[b : b + batch_size], self.val_targets[b : b + batch_size]

    def eval_row(self, total, groups) -> dict:
        """Validation loss per token and bits per byte."""
        return {"loss": total["nats"] / max(total["targets"], 1),
                "bpb": total["nats"] / math.log(2) / max(total["bytes"], 1)}

    def close(self) -> None:
        """Stop the background loader of a streamed source (cached sources hold no process)."""
        if self._feed is not None:
            self._feed.close()
