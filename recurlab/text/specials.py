"""Which special tokens a model puts around a whole sequence: a model folder's own convention.

    prefix, suffix = folder_specials(Path("models/rr-tinyllama"), tok)   # e.g. ([1], [])
    tok.prefix_ids, tok.suffix_ids = prefix, suffix
    before, after = sequence_specials(tok)        # what the engine wraps every prompt in

A folder's tokenizer_config.json decides where it sets `add_bos_token` / `add_eos_token` (as
Hugging Face's Llama tokenizer rebuilds its post-processor from them); where it does not, the
post-processor of tokenizer.json does (a TemplateProcessing such as `<s> $A`, found by encoding a
probe with and without special tokens). recurlab's own run tokenizers carry no convention: a
trained BPE adds nothing and the task vocabulary starts every sequence with <bos>.
"""

from __future__ import annotations

import json
from pathlib import Path

from recurlab.errors import ModelFormatError

PROBES = ("a", "0", "the", " ", ".")  # plain text that any byte-level or word-piece vocabulary encodes


def sequence_specials(tok) -> tuple[list[int], list[int]]:
    """(ids before, ids after) the text of a whole sequence for this tokenizer's model."""
    if hasattr(tok, "prefix_ids"):
        return list(tok.prefix_ids), list(getattr(tok, "suffix_ids", ()))
    return ([tok.bos_id] if getattr(tok, "prepend_bos", False) else []), []


def template_specials(tokenizer) -> tuple[list[int], list[int]]:
    """What a `tokenizers.Tokenizer`'s post-processor adds around a single sequence."""
    if tokenizer.num_special_tokens_to_add(False) == 0:
        return [], []
    for probe in PROBES:
        plain = tokenizer.encode(probe, add_special_tokens=False).ids
        full = tokenizer.encode(probe, add_special_tokens=True).ids
        if not plain:
            continue
        for start in range(len(full) - len(plain) + 1):
            if full[start:start + len(plain)] == plain:
                return full[:start], full[start + len(plain):]
    return [], []  # a post-processor that rewrites the text's own ids is not a wrapping convention


def _token(raw: dict, key: str, vocab: dict, fallback: int, path: Path) -> int:
    value = raw.get(key)
    if isinstance(value, dict):  # the AddedToken form: {"content": "<s>", ...}
        value = value.get("content")
    if value is None:
        return fallback
    if not isinstance(value, str) or value not in vocab:
        raise ModelFormatError(f"{path}: {key} {value!r} is not a token of tokenizer.json; fix or remove it")
    return vocab[value]


def folder_specials(folder: Path, tok) -> tuple[list[int], list[int]]:
    """The (prefix, suffix) ids of a model folder whose tokenizer.json `tok` (a BPETokenizer) holds."""
    prefix, suffix = template_specials(tok.tok)
    path = Path(folder) / "tokenizer_config.json"
    if not path.is_file():
        return prefix, suffix
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{path} is not readable JSON ({exc.__class__.__name__}); fix or remove it") from None
    if not isinstance(raw, dict):
        raise ModelFormatError(f"{path} must hold a JSON object; fix or remove it")
    vocab = tok.tok.get_vocab(with_added_tokens=True)
    for key in ("add_bos_token", "add_eos_token"):
        if raw.get(key) is not None and not isinstance(raw[key], bool):
            raise ModelFormatError(f"{path}: {key} must be true or false, got {raw[key]!r}")
    if raw.get("add_bos_token") is not None:
        prefix = [_token(raw, "bos_token", vocab, tok.bos_id, path)] if raw["add_bos_token"] else []
    if raw.get("add_eos_token") is not None:
        suffix = [_token(raw, "eos_token", vocab, tok.eos_id, path)] if raw["add_eos_token"] else []
    return prefix, suffix
