"""A byte-level BPE tokenizer (the `tokenizers` library) behind the CharVocab interface.

    tok = BPETokenizer.train(texts, vocab_size=8192)     # texts: any iterable of str
    tok.save("runs/x/tokenizer.json"); tok = BPETokenizer.load("runs/x/tokenizer.json")
    ids = tok.encode("x = 3.5 ✓")                        # exact: tok.decode(ids) gives the text back
    tok.decode(ids); tok.token_str(i); tok.eos_id; tok.pad_id; tok.bos_id; len(tok)

Special tokens use Huginn's names (<|begin_text|>, <|end_text|>, <|pad|>), so a loaded Huginn
tokenizer.json finds its specials the same way; other common names are accepted on load.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from recurlab.rundir import atomic_write_text
from recurlab.tasks.vocab import VocabError

SPECIALS = {"pad": "<|pad|>", "bos": "<|begin_text|>", "eos": "<|end_text|>"}
ALIASES = {
    "pad": ("<|pad|>", "<pad>", "[PAD]", "<|padding|>"),
    "bos": ("<|begin_text|>", "<bos>", "<s>", "<|begin_of_text|>", "<|startoftext|>", "<|endoftext|>"),
    "eos": ("<|end_text|>", "<eos>", "</s>", "<|end_of_text|>", "<|endoftext|>"),
}
REPLACEMENT = "\ufffd"


def _byte_chars() -> dict[str, int]:
    """The byte-level alphabet: the printable character that stands for each of the 256 bytes."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


class BPETokenizer:
    def __init__(self, tok: Tokenizer, source: str = ""):
        self.tok = tok
        self.source = source
        vocab = tok.get_vocab(with_added_tokens=True)
        self._size = max(vocab.values()) + 1 if vocab else 0
        ids = {}
        for role, names in ALIASES.items():
            ids[role] = next((vocab[n] for n in names if n in vocab), None)
        if ids["eos"] is None:
            raise VocabError(f"tokenizer {source or ''} has no end-of-text token ({', '.join(ALIASES['eos'])}); "
                             "packing needs one: add it or train a new one (leave data.tokenizer empty)")
        self.eos_id = ids["eos"]
        self.bos_id = ids["bos"] if ids["bos"] is not None else self.eos_id
        self.pad_id = ids["pad"] if ids["pad"] is not None else self.eos_id
        self.special_ids = {i for i in ids.values() if i is not None}
        self.special_ids |= {i for i, t in tok.get_added_tokens_decoder().items() if t.special}
        # ids around a whole sequence: a model folder's convention (recurlab.text.specials), none for a run's own
        self.prefix_ids: list[int] = []
        self.suffix_ids: list[int] = []

    # ---- construction -----------------------------------------------------------------
    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> "BPETokenizer":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[SPECIALS["pad"], SPECIALS["bos"], SPECIALS["eos"]],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer)
        return cls(tok, "trained")

    @classmethod
    def load(cls, path: str | Path) -> "BPETokenizer":
        path = Path(path)
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on unreadable files
            raise VocabError(f"{path} is not a readable tokenizer.json ({str(exc).splitlines()[0] if str(exc) else 'unreadable'}); "
                             "point data.tokenizer at a `tokenizers` file or leave it empty to train one") from None
        return cls(tok, str(path))

    def to_json(self) -> str:
        return self.tok.to_str()

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), self.to_json())

    def hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    # ---- the CharVocab interface --------------------------------------------------------
    def __len__(self) -> int:
        return self._size

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise VocabError(f"can only encode text, got {type(text).__name__}")
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids, skip_special: bool = True) -> str:
        out, run = [], []
        for i in ids:
            i = int(i)
            if 0 <= i < self._size and self.tok.id_to_token(i) is not None:
                if not (skip_special and i in self.special_ids):
                    run.append(i)
                continue
            if run:
                out.append(self.tok.decode(run, skip_special_tokens=skip_special))
                run = []
            out.append(REPLACEMENT)
        if run:
            out.append(self.tok.decode(run, skip_special_tokens=skip_special))
        return "".join(out)

    def token_str(self, i: int) -> str:
        i = int(i)
        piece = self.tok.id_to_token(i) if 0 <= i < self._size else None
        if piece is None:
            return REPLACEMENT
        if i in self.special_ids:
            return piece
        return self.tok.decode([i], skip_special_tokens=False)

    def token_bytes(self) -> np.ndarray:
        """UTF-8 bytes each id stands for (0 for special tokens): the denominator of bits per byte."""
        chars = _byte_chars()
        out = np.zeros(self._size, dtype=np.int64)
        for piece, i in self.tok.get_vocab(with_added_tokens=True).items():
            if i in self.special_ids or i >= self._size:
                continue
            out[i] = sum(1 if c in chars else len(c.encode()) for c in piece)
        return out
