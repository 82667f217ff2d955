"""The tokenizer a run was trained with, read from its run directory.

    tok = run_tokenizer(run)         # CharVocab for embedded-task runs, BPE for text runs
    ids = tok.encode("12+34=")       # raises VocabError on characters it cannot encode
    tok.decode(ids); tok.token_str(i); tok.eos_id; tok.pad_id; tok.bos_id; len(tok)
"""

from __future__ import annotations

from recurlab.rundir import RunDir, RunError
from recurlab.tasks.vocab import CharVocab


def run_tokenizer(run: RunDir):
    if run.vocab_path.exists():
        return CharVocab.load(run.vocab_path)
    if run.tokenizer_path.exists():
        from recurlab.text.bpe import BPETokenizer  # numpy and tokenizers: loaded only when this runs

        return BPETokenizer.load(run.tokenizer_path)
    raise RunError(f"run {run.name} has no vocab.json or tokenizer.json yet; the worker writes it when it starts")
