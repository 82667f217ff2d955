"""Streamed sources, tokenized and packed on the fly in a background data-loader process.

    feed = StreamFeed(cfg.data, tok, skip_docs=40, seed=0)
    rows = feed.get(first=1024, n=64)      # packed sequences 1024..1087 of the stream, (64, seq_len + 1)
    feed.close()

The worker process (a torch DataLoader worker over `PackedStream`) reads the stream, skips the
documents held out for validation, shuffles through a seeded buffer, tokenizes, and packs the ids
(documents separated by end-of-text) into windows of seq_len + 1 that overlap by one token, so
every token is a target exactly once. Sequence numbers are global and deterministic, so a step
always gets the same sequences: asking for an earlier sequence than the last one served (a resume,
a repeated step) restarts the worker, which re-reads the stream up to that point (reading costs
time proportional to the position; cached local corpora seek instantly instead).
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from recurlab.config import DataConfig
from recurlab.errors import DataError
from recurlab.text.bpe import BPETokenizer
from recurlab.text.sources import empty_error, iter_texts, open_rows

SHUFFLE_BUFFER = 10_000
ENCODE_DOCS = 64
CHUNK = 16  # sequences per message from the worker: fewer, larger transfers
PREFETCH = 32  # chunks the worker may run ahead


def _batched(it, n):
    batch = []
    for x in it:
        batch.append(x)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


class PackedStream(IterableDataset):
    """Packed training sequences of a streamed source, from global sequence number `start` on."""

    def __init__(self, d: DataConfig, tokenizer_json: str, skip_docs: int, seed: int, start: int = 0):
        super().__init__()
        self.d, self.tokenizer_json, self.skip_docs, self.seed, self.start = d, tokenizer_json, skip_docs, seed, start

    def __iter__(self):
        from tokenizers import Tokenizer

        tok = BPETokenizer(Tokenizer.from_str(self.tokenizer_json))
        length = self.d.seq_len + 1
        dtype = np.int64
        eos = np.array([tok.eos_id], dtype=dtype)
        buf = np.zeros(0, dtype=dtype)
        seq, out, first, epoch = 0, [], self.start, 0
        while True:
            rows, where = open_rows(self.d, streaming=True)
            rows = rows.skip(self.skip_docs).shuffle(seed=self.seed, buffer_size=SHUFFLE_BUFFER)
            rows.set_epoch(epoch)
            seen = False
            for texts in _batched(iter_texts(rows, self.d, where), ENCODE_DOCS):
                seen = True
                parts = [buf]
                for ids in tok.encode_batch(texts):
                    parts += [np.asarray(ids, dtype=dtype), eos]
                buf = np.concatenate(parts)
                pos = 0
                while len(buf) - pos >= length:
                    if seq >= self.start:
                        out.append(buf[pos : pos + length])
                        if len(out) == CHUNK:
                            yield first, torch.from_numpy(np.stack(out))
                            first += CHUNK
                            out = []
                    seq += 1
                    pos += length - 1
                buf = buf[pos:]
            if not seen:
                raise empty_error(where, self.d)
            epoch += 1


def _reraise(exc: Exception):
    """A DataLoader worker's error arrives with its traceback in the message; keep the last line."""
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    last = lines[-1] if lines else str(exc)
    prefix = "recurlab.errors.DataError: "
    if prefix in last or "DataError" in str(exc).splitlines()[0]:
        raise DataError(last.split(prefix, 1)[-1]) from None
    raise exc


class StreamFeed:
    def __init__(self, d: DataConfig, tok: BPETokenizer, skip_docs: int, seed: int):
        self.d, self.tok, self.skip_docs, self.seed = d, tok, skip_docs, seed
        self._loader = self._it = self._pending = None
        self._next = 0

    def _start(self, first: int) -> None:
        self.close()
        ds = PackedStream(self.d, self.tok.to_json(), self.skip_docs, self.seed, start=first)
        # fork keeps the parent's imports (and test monkeypatches); the worker never touches CUDA
        ctx = "fork" if sys.platform.startswith("linux") else None
        self._loader = DataLoader(ds, batch_size=None, num_workers=1, prefetch_factor=PREFETCH,
                                  multiprocessing_context=ctx)
        self._it = iter(self._loader)
        self._pending = None

    def get(self, first: int, n: int) -> np.ndarray:
        """Sequences first..first+n-1 of the packed stream, as an (n, seq_len + 1) int64 array."""
        if self._it is None or first < self._next:
            self._start(first)
        rows: list[np.ndarray] = []
        while len(rows) < n:
            if self._pending is None:
                try:
                    start, arr = next(self._it)
                except DataError:
                    raise
                except Exception as exc:
                    _reraise(exc)
                self._pending = (int(start), arr.numpy())
            start, arr = self._pending
            want = first + len(rows)
            lo = want - start
            if lo >= len(arr):
                self._pending = None
                continue
            take = arr[lo : lo + n - len(rows)]
            rows.extend(take)
            if lo + len(take) >= len(arr):
                self._pending = None
        self._next = first + n
        return np.stack(rows)

    def close(self) -> None:
        it, self._it, self._loader = self._it, None, None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
