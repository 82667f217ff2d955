"""The tokenizer of a Huginn-format folder, as recurlab's BPETokenizer (the CharVocab interface).

    tok = load_huginn_tokenizer("models/huginn-0125", {"bos": 65504, "eos": 65505, "pad": 65509})
    ids = tok.encode("The capital of Westphalia is")   # the text's ids alone
    tok.prefix_ids, tok.suffix_ids                     # what the folder puts around a whole sequence
    tok.decode(ids); tok.token_str(ids[0]); tok.eos_id; tok.pad_id; tok.bos_id; len(tok)

BPETokenizer finds Huginn's special tokens by name (<|begin_text|>, <|end_text|>, <|pad|>); ids
that config.json states explicitly take precedence. Ids the tokenizer does not know (the model's
vocabulary may be padded beyond it) decode to U+FFFD. The special tokens around a whole sequence
follow the folder's tokenizer_config.json and post-processor (recurlab.text.specials).
"""

from __future__ import annotations

from pathlib import Path

from recurlab.errors import ModelFormatError
from recurlab.huginn.config import DOWNLOAD_HINT
from recurlab.text.bpe import SPECIALS, BPETokenizer
from recurlab.text.specials import folder_specials

HUGINN_SPECIALS = SPECIALS  # the same names: <|begin_text|>, <|end_text|>, <|pad|>


def load_huginn_tokenizer(folder: str | Path, ids: dict[str, int | None] | None = None) -> BPETokenizer:
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise ModelFormatError(f"{folder} has no tokenizer.json; download it with the weights ({DOWNLOAD_HINT})")
    tok = BPETokenizer.load(path)
    for role, value in (ids or {}).items():
        if value is not None:
            setattr(tok, f"{role}_id", int(value))
            tok.special_ids.add(int(value))
    tok.prefix_ids, tok.suffix_ids = folder_specials(Path(folder), tok)
    return tok
