"""A Hugging Face `tokenizer.json` behind recurlab's tokenizer interface (the one CharVocab has).

    tok = HuginnTokenizer.load("models/huginn-0125", vocab_size=65536)
    ids = tok.encode("The capital of Westphalia is")   # list[int]; VocabError if it cannot encode
    tok.decode(ids); tok.token_str(ids[0]); tok.eos_id; tok.pad_id; tok.bos_id; len(tok)

`encode` adds no special tokens (generation code prepends bos itself if it wants one). The special
ids come from special_tokens_map.json or config.json when the folder has them, else from Huginn's
token names (<|begin_text|>, <|end_text|>, <|pad|>). `len(tok)` is the model's (padded) vocabulary:
ids the tokenizer does not know decode to U+FFFD, as in CharVocab.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer

from recurlab.errors import ModelFormatError, VocabError
from recurlab.huginn.config import DOWNLOAD_HINT

HUGINN_SPECIALS = {"bos": "<|begin_text|>", "eos": "<|end_text|>", "pad": "<|pad|>"}
REPLACEMENT = "\ufffd"


def _special_names(folder: Path) -> dict[str, str]:
    names = dict(HUGINN_SPECIALS)
    path = folder / "special_tokens_map.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        for role in ("bos", "eos", "pad"):
            entry = data.get(f"{role}_token")
            if isinstance(entry, dict):
                entry = entry.get("content")
            if isinstance(entry, str):
                names[role] = entry
    return names


class HuginnTokenizer:
    def __init__(self, tokenizer: Tokenizer, vocab_size: int, bos_id: int | None, eos_id: int | None,
                 pad_id: int | None):
        self._tok = tokenizer
        self._n = max(vocab_size, tokenizer.get_vocab_size(with_added_tokens=True))
        self.bos_id, self.eos_id = bos_id, eos_id
        self.pad_id = pad_id if pad_id is not None else eos_id
        unk = getattr(tokenizer.model, "unk_token", None)
        self._unk_id = tokenizer.token_to_id(unk) if unk else None

    @classmethod
    def load(cls, folder: str | Path, vocab_size: int = 0, ids: dict[str, int | None] | None = None) -> "HuginnTokenizer":
        """`ids` (bos/eos/pad from config.json) win over names found in the tokenizer."""
        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise ModelFormatError(f"{folder} has no tokenizer.json; download it with the weights ({DOWNLOAD_HINT})")
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises plain Exception subclasses for malformed files
            raise ModelFormatError(f"{path} is not a readable tokenizers file ({str(exc).splitlines()[0]}); re-download it") from None
        found = {role: tok.token_to_id(name) for role, name in _special_names(folder).items()}
        given = {k: v for k, v in (ids or {}).items() if v is not None}
        found.update(given)
        return cls(tok, vocab_size, found.get("bos"), found.get("eos"), found.get("pad"))

    def __len__(self) -> int:
        return self._n

    def encode(self, text: str) -> list[int]:
        ids = self._tok.encode(text, add_special_tokens=False).ids
        if text and not ids:
            raise VocabError(f"the tokenizer produced no tokens for {text[:40]!r}; use plain text")
        if self._unk_id is not None and self._unk_id in ids:
            bad = sorted({c for c in text if self._unk_id in self._tok.encode(c, add_special_tokens=False).ids})
            raise VocabError(f"characters {''.join(bad[:10])!r} are not in this model's vocabulary; remove them from the prompt")
        return ids

    def decode(self, ids, skip_special: bool = True) -> str:
        out, run = [], []
        known = self._tok.get_vocab_size(with_added_tokens=True)
        for i in ids:
            i = int(i)
            if 0 <= i < known:
                run.append(i)
                continue
            if run:
                out.append(self._tok.decode(run, skip_special_tokens=skip_special))
                run = []
            out.append(REPLACEMENT)
        if run:
            out.append(self._tok.decode(run, skip_special_tokens=skip_special))
        return "".join(out)

    def token_str(self, i: int) -> str:
        i = int(i)
        if not 0 <= i < self._tok.get_vocab_size(with_added_tokens=True):
            return REPLACEMENT
        text = self._tok.decode([i], skip_special_tokens=False)
        return text if text else (self._tok.id_to_token(i) or REPLACEMENT)
