"""Token ids of a finite corpus, tokenized once and kept as memory-mapped files.

    corpus, hit = cached_corpus(root, key, texts_fn, tok, val_fraction=0.01, where="local files at /d")
    corpus.train[:10]; corpus.val; corpus.meta["docs"]

Layout: ROOT/tokens/KEY/{train.bin, val.bin, meta.json}. Each split is the concatenation of its
documents' ids, each followed by end-of-text. Document i goes to validation when
i % round(1/val_fraction) == 0 (so document 0 always does, and the split is spread over the
corpus). The directory is built under a temporary name and renamed into place, so a crash never
leaves a half cache that a later run would trust; `texts_fn` is called only on a miss.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recurlab.errors import DataError

BATCH_DOCS = 512


def is_val_doc(i: int, val_fraction: float) -> bool:
    return i % max(2, round(1 / val_fraction)) == 0


def token_dtype(vocab_size: int):
    return np.uint16 if vocab_size <= 65536 else np.uint32


@dataclass
class Corpus:
    train: np.ndarray
    val: np.ndarray
    meta: dict


def _open(path: Path) -> Corpus:
    meta = json.loads((path / "meta.json").read_text())
    dtype = np.dtype(meta["dtype"])

    def mm(name: str, n: int) -> np.ndarray:
        return np.memmap(path / name, dtype=dtype, mode="r", shape=(n,)) if n else np.zeros(0, dtype=dtype)

    return Corpus(mm("train.bin", meta["train_tokens"]), mm("val.bin", meta["val_tokens"]), meta)


def tokenize_to(path: Path, texts, tok, val_fraction: float) -> dict:
    """Write train.bin / val.bin / meta.json for `texts` into the folder `path`."""
    dtype = token_dtype(len(tok))
    counts = {"train": 0, "val": 0}
    docs = n_bytes = 0
    eos = np.array([tok.eos_id], dtype=dtype)
    with open(path / "train.bin", "wb") as ftrain, open(path / "val.bin", "wb") as fval:
        batch: list[str] = []

        def flush():
            nonlocal docs, n_bytes
            for text, ids in zip(batch, tok.encode_batch(batch)):
                split = "val" if is_val_doc(docs, val_fraction) else "train"
                arr = np.concatenate([np.asarray(ids, dtype=dtype), eos])
                (fval if split == "val" else ftrain).write(arr.tobytes())
                counts[split] += len(arr)
                docs += 1
                n_bytes += len(text.encode())
            batch.clear()

        for text in texts:
            batch.append(text)
            if len(batch) >= BATCH_DOCS:
                flush()
        if batch:
            flush()
    meta = {"dtype": np.dtype(dtype).name, "docs": docs, "bytes": n_bytes, "train_tokens": counts["train"],
            "val_tokens": counts["val"], "tokenizer": tok.hash(), "val_fraction": val_fraction}
    (path / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def cached_corpus(root: Path, key: str, texts_fn, tok, val_fraction: float, where: str) -> tuple[Corpus, bool]:
    """The corpus under ROOT/tokens/KEY, building it from `texts_fn()` on a miss. Returns (corpus, hit)."""
    final = Path(root) / "tokens" / key
    if (final / "meta.json").exists():
        return _open(final), True
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{key}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        meta = tokenize_to(tmp, texts_fn(), tok, val_fraction)
        if meta["docs"] == 0:
            raise DataError(f"{where}: no documents with text; check data.text_field / data.template and the files")
        try:
            os.rename(tmp, final)
        except OSError:
            # another process (a second rank) finished the same cache first; theirs is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _open(final), False
