"""Real text: tokenizer round trip, packing, the token cache, hub errors and streaming, a tiny run."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

# no network here, and none wanted: the hub must fail fast, not wait for timeouts
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

from recurlab.config import load_profile, to_yaml  # noqa: E402
from recurlab.errors import DataError  # noqa: E402
from recurlab.rundir import RunDir  # noqa: E402
from recurlab.text import sources  # noqa: E402
from recurlab.text.bpe import BPETokenizer  # noqa: E402
from recurlab.text.data import TextData  # noqa: E402
from recurlab.text.synth import write_corpus  # noqa: E402

VOCAB = 384


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    write_corpus(root / "txt", n_bytes=300_000, files=3, fmt="txt")
    write_corpus(root / "jsonl", n_bytes=60_000, files=1, fmt="jsonl", seed=1)
    return root


def text_cfg(corpus, cache, *extra):
    """The tiny profile on local text; `extra` replaces a default key (a key may appear once only)."""
    defaults = ["data.source=local", f"data.name={corpus / 'txt'}", f"data.cache_dir={cache}",
                f"data.tokenizer_vocab={VOCAB}", "data.seq_len=32", "data.val_fraction=0.05", "data.eval_examples=16"]
    given = {item.split("=", 1)[0] for item in extra}
    return load_profile("tiny", [d for d in defaults if d.split("=", 1)[0] not in given] + list(extra))


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory):
    """One tokenizer and token cache shared by the tests that only read them."""
    cache = tmp_path_factory.mktemp("cache")
    return TextData(text_cfg(corpus, cache)), cache


def corpus_docs(corpus) -> list[str]:
    docs = []
    for p in sorted((corpus / "txt").glob("*.txt")):
        docs += [d for d in p.read_text().split("\n\n") if d.strip()]
    return docs


def test_tokenizer_round_trip_is_exact(built, corpus, tmp_path):
    data, _ = built
    tok = data.tokenizer
    assert len(tok) == VOCAB and tok.eos_id != tok.pad_id != tok.bos_id
    text = (corpus / "txt" / "part-000.txt").read_text()
    ids = tok.encode(text)
    assert len(ids) < len(text.encode()) / 1.5  # merges were learned
    assert tok.decode(ids) == text
    for s in ["", "  \t\r\n", "Straße → 日本語 😀 ½", "unseen ĳ ǅ \u200b \x00 bytes", "x" * 1000]:
        assert tok.decode(tok.encode(s)) == s
    # bytes per token add up to the UTF-8 length: the denominator of bits per byte
    assert int(data.token_bytes[torch.tensor(ids)].sum()) == len(text.encode())
    assert tok.decode([tok.bos_id] + tok.encode("hi") + [tok.eos_id]) == "hi"
    assert tok.token_str(tok.eos_id) == "<|end_text|>"
    tok.save(tmp_path / "t.json")
    again = BPETokenizer.load(tmp_path / "t.json")
    assert again.hash() == tok.hash() and again.encode(text[:500]) == ids[: len(again.encode(text[:500]))]


def test_packing_loses_no_tokens(built, corpus):
    data, _ = built
    tok, L = data.tokenizer, data.cfg.data.seq_len
    docs = corpus_docs(corpus)
    assert data.meta["docs"] == len(docs)
    expected_train, expected_val = [], []
    for i, doc in enumerate(docs):
        (expected_val if i % 20 == 0 else expected_train).extend(tok.encode(doc) + [tok.eos_id])
    assert np.array_equal(np.asarray(data.train_tokens), expected_train)
    assert expected_val[: data.val_idx.shape[1] + 1] == data.val_idx[0].tolist() + [data.val_targets[0, -1].item()]
    # one epoch of windows, put back in corpus order, covers every training token exactly once
    n = data.n_seq
    windows = data.train_windows(0, n)
    order = data._order(0)
    in_place = np.empty_like(windows)
    in_place[order] = windows
    stream = np.asarray(data.train_tokens)
    flat = in_place[:, :L].reshape(-1)
    assert np.array_equal(flat, np.resize(stream, n * L))
    # each window's last target is the next window's first input: no token is skipped as a target
    assert np.array_equal(in_place[:-1, L], in_place[1:, 0])
    # inputs and targets are the same window shifted by one; batches are deterministic in step
    idx, tgt = data.train_batch(5, 8, offset=0)
    assert torch.equal(idx[:, 1:], tgt[:, :-1]) and (tgt != -100).all()
    idx2, _ = data.train_batch(5, 4, offset=4)
    assert torch.equal(idx[4:], idx2)
    assert not torch.equal(data.train_batch(6, 8)[0], idx)


def test_cache_is_reused_without_reading_the_source(built, corpus, monkeypatch):
    data, cache = built

    def no_reading(*a, **k):
        raise AssertionError("the source was read again")

    monkeypatch.setattr(sources, "load_local", no_reading)
    monkeypatch.setattr(BPETokenizer, "train", no_reading)
    again = TextData(text_cfg(corpus, cache))
    assert again.cache_hit and again.tokenizer.hash() == data.tokenizer.hash()
    assert np.array_equal(np.asarray(again.train_tokens), np.asarray(data.train_tokens))
    assert isinstance(again.train_tokens, np.memmap)
    # a changed file invalidates the cache: the loader is called (and here refuses)
    f = corpus / "txt" / "part-002.txt"
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="read again"):
        TextData(text_cfg(corpus, cache))


def test_hub_without_network_names_the_dataset_and_the_local_fix(tmp_path):
    cfg = load_profile("tiny", ["data.source=hub", "data.name=nvidia/OpenMathInstruct-1", f"data.cache_dir={tmp_path}",
                                "data.template={question}\n{generated_solution}", "data.seq_len=32"])
    with pytest.raises(DataError) as err:
        TextData(cfg)
    msg = str(err.value)
    assert "\n" not in msg
    assert "nvidia/OpenMathInstruct-1" in msg and "{question}" in msg
    assert "data.source=local data.name=/path/to/files" in msg


def test_missing_field_and_missing_files_are_one_line_errors(corpus, tmp_path):
    cfg = text_cfg(corpus, tmp_path, f"data.name={corpus / 'jsonl'}", "data.text_field=body")
    with pytest.raises(DataError, match=r"no field 'body' \(fields: text, id\); set data.text_field"):
        TextData(cfg)
    with pytest.raises(DataError, match="no such file or folder"):
        TextData(text_cfg(corpus, tmp_path, f"data.name={tmp_path / 'nope'}"))
    with pytest.raises(DataError, match="set model.vocab_size=384"):
        TextData(text_cfg(corpus, tmp_path, "model.vocab_size=100"))


def test_hub_streaming_is_the_same_code_with_another_loader(corpus, tmp_path, monkeypatch):
    """Only the loader call differs: the hub loader is pointed at local JSON lines."""
    import datasets

    files = [str(p) for p in sorted((corpus / "jsonl").glob("*.jsonl"))]
    monkeypatch.setattr(sources, "load_hub",
                        lambda d, streaming: datasets.load_dataset("json", data_files=files, split="train", streaming=streaming))
    cfg = text_cfg(corpus, tmp_path, "data.source=hub", "data.name=someone/corpus", "data.streaming=true",
                   "data.eval_examples=4")
    data = TextData(cfg)
    try:
        assert data.streaming and data.val_idx.shape == (4, 32)
        a1, t1 = data.train_batch(1, 8)
        a2, _ = data.train_batch(2, 8)
        worker = data._feed._it._workers[0]
        assert worker.is_alive()  # tokenized in a background process
        again, _ = data.train_batch(1, 8)  # a step asked again (resume) gets the same sequences
        assert torch.equal(again, a1) and not torch.equal(a1, a2)
        assert torch.equal(a1[:, 1:], t1[:, :-1])
        text = data.tokenizer.decode(a1.flatten().tolist())
        assert "Question:" in text or "Inventory" in text or len(text) > 100
    finally:
        data.close()
    worker.join(timeout=10)
    assert not worker.is_alive()


def test_tiny_text_run_learns_and_sweeps(corpus, tmp_path, monkeypatch):
    from recurlab.engine import open_model, run_sweep
    from recurlab.tokenizer import run_tokenizer
    from recurlab.worker import run_worker

    torch.set_num_threads(1)
    cfg = text_cfg(corpus, tmp_path / "cache", "train.max_steps=40", "train.batch_size=16", "train.eval_every=40",
                   "train.checkpoint_every=40", "train.lr=5e-3", "train.warmup_steps=5")
    run = RunDir.create(tmp_path / "runs", "text", to_yaml(cfg))
    assert run_worker(run.path) == 0, run.log_tail()
    assert run.read_status()["state"] == "finished"
    losses = [r["loss"] for r in run.read_metrics("train")]
    assert len(losses) == 40
    assert np.mean(losses[-5:]) < np.mean(losses[:3]) - 1.0, losses
    evals = run.read_metrics("eval")
    assert {e["r"] for e in evals} == {1, 4} and all(0 < e["bpb"] < 8 for e in evals)
    tok = run_tokenizer(run)
    assert isinstance(tok, BPETokenizer) and len(tok) == VOCAB
    assert json.loads(run.tokenizer_path.read_text())["model"]["type"] == "BPE"
    # the sweep evaluates with the run's own tokenizer, never a freshly trained one
    monkeypatch.setattr(BPETokenizer, "train", lambda *a, **k: pytest.fail("sweep trained a new tokenizer"))
    import shutil

    shutil.rmtree(tmp_path / "cache" / "tokenizers")
    result = run_sweep(open_model(run, device="cpu"), [1, 2])
    assert [row["r"] for row in result.rows] == [1, 2] and all(row["bpb"] > 0 for row in result.rows)
