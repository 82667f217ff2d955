"""The fixed character vocabulary of the embedded tasks (no torch, no downloads).

    v = CharVocab.default()
    ids = v.encode("12+34=")      # raises VocabError naming any unknown character
    v.decode(ids)
"""

from __future__ import annotations

import json
from pathlib import Path

from recurlab.errors import VocabError  # re-exported by recurlab.tasks

SPECIALS = ("<pad>", "<bos>", "<eos>")
ALPHABET = "0123456789+-*=>.,;:|?()abcdefghijklmnopqrstuvwxyz "



class CharVocab:
    prepend_bos = True  # task sequences start with <bos>; generation prompts must too

    def __init__(self, alphabet: str = ALPHABET):
        self.alphabet = alphabet
        self.itos = list(SPECIALS) + list(alphabet)
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2

    @classmethod
    def default(cls) -> "CharVocab":
        return cls()

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        bad = sorted({c for c in text if c not in self.stoi or len(c) != 1})
        if bad:
            shown = "".join(bad[:10])
            raise VocabError(
                f"characters {shown!r} are not in this model's vocabulary; use only {self.alphabet.strip()!r} and spaces"
            )
        return [self.stoi[c] for c in text]

    def decode(self, ids, skip_special: bool = True) -> str:
        out = []
        for i in ids:
            i = int(i)
            if 0 <= i < len(self.itos):
                tok = self.itos[i]
                if tok in SPECIALS:
                    if skip_special:
                        continue
                out.append(tok)
            else:
                out.append("\ufffd")
        return "".join(out)

    def token_str(self, i: int) -> str:
        i = int(i)
        return self.itos[i] if 0 <= i < len(self.itos) else "\ufffd"

    def to_json(self) -> str:
        return json.dumps({"type": "chars", "specials": list(SPECIALS), "alphabet": self.alphabet})

    @classmethod
    def load(cls, path: str | Path) -> "CharVocab":
        try:
            data = json.loads(Path(path).read_bytes())
        except OSError as exc:  # a folder in its place, no permission
            raise VocabError(f"cannot read {path}: {exc.strerror}") from None
        except ValueError:
            data = None
        if (not isinstance(data, dict) or data.get("type") != "chars" or list(data.get("specials", [])) != list(SPECIALS)
                or not isinstance(data.get("alphabet"), str)):
            raise VocabError(f"{path} is not a recurlab character vocabulary")
        return cls(data["alphabet"])
