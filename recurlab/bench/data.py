"""Text data throughput: tokenization with the cache cold and warm, the loader, and the model beside it.

    python -m recurlab.bench.data --out bench-results/data.json
    python -m recurlab.bench.data --mb 16 --profile compare --device cuda

On a generated local corpus (recurlab.text.synth, `--mb` megabytes) in a temporary cache:
  * cold: a first TextData trains the BPE and tokenizes everything (reported apart: tokenizer
    training, then tokenization alone with the tokenizer already cached);
  * warm: a second TextData finds the memory-mapped cache (no source read);
  * loader: packed training batches per second from the cache, and from the streamed path (the
    hub code path with its loader pointed at the same files), tokenized in a background process;
  * model: training tokens/s of the profile's model (forward + backward + AdamW at r = r_mean,
    k with gradient) on `--device`.
`data_is_bottleneck` is true when a loader delivers fewer tokens/s than the model consumes.
Results are printed as JSON and written to `--out`.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from recurlab.bench.results import bench_parser, write_result
from recurlab.config import load_profile
from recurlab.devices import resolve_device
from recurlab.model import RecurrentLM
from recurlab.text import sources
from recurlab.text.data import TextData
from recurlab.text.synth import write_corpus
from recurlab.train import build_optimizer


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def loader_rate(data, batch: int, seconds: float) -> float:
    """Training tokens/s that train_batch delivers (the model's inputs, batch x seq_len per step)."""
    data.train_batch(0, batch)  # start (and for streams: spawn the worker) outside the timing
    n, step, t0 = 0, 1, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        idx, _ = data.train_batch(step, batch)
        n += idx.numel()
        step += 1
    return n / (time.perf_counter() - t0)


def model_rate(cfg, device: str, steps: int) -> float:
    dev = torch.device(resolve_device(device))
    model = RecurrentLM(cfg.model).to(dev)
    opt = build_optimizer(model, cfg, dev)
    B, L, t = cfg.train.batch_size, cfg.data.seq_len, cfg.train
    idx = torch.randint(0, cfg.model.vocab_size, (B, L + 1), device=dev)
    amp = dev.type == "cuda" and cfg.hardware.dtype == "bfloat16"

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            out = model(idx[:, :-1], max(t.r_mean - t.k, 0), t.k, idx[:, 1:])
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return steps * B * L / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("data", __doc__, out="bench-results/data.json")
    parser.add_argument("--mb", type=float, default=8.0, help="size of the generated corpus in MB")
    parser.add_argument("--profile", default="compare", help="profile whose model and data shape are measured")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model-steps", type=int, default=2)
    parser.add_argument("--loader-seconds", type=float, default=3.0)
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the profile")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="recurlab-bench-data-"))
    try:
        files = write_corpus(work / "corpus", n_bytes=int(args.mb * 1e6), files=4)
        cfg = load_profile(args.profile, ["data.source=local", f"data.name={work / 'corpus'}",
                                          f"data.cache_dir={work / 'cache'}", f"hardware.device={args.device}",
                                          *args.overrides])
        cold, t_cold = _timed(lambda: TextData(cfg))
        tokens = int(cold.meta["train_tokens"] + cold.meta["val_tokens"])
        shutil.rmtree(work / "cache" / "tokens")  # keep the trained tokenizer: time tokenization alone
        _, t_tok = _timed(lambda: TextData(cfg))
        warm, t_warm = _timed(lambda: TextData(cfg))
        assert warm.cache_hit
        B = cfg.train.batch_size
        cached_rate = loader_rate(warm, B, args.loader_seconds)

        import datasets

        paths = [str(p) for p in files]
        sources.load_hub = lambda d, streaming: datasets.load_dataset(
            "text", data_files=paths, split="train", streaming=True, sample_by="paragraph")
        warm.tokenizer.save(work / "tok.json")  # the stream uses the same tokenizer instead of training one
        streamed = TextData(load_profile(args.profile, [
            "data.source=hub", "data.name=bench/local-as-hub", "data.streaming=true", f"data.tokenizer={work / 'tok.json'}",
            f"data.cache_dir={work / 'cache'}", f"hardware.device={args.device}", *args.overrides]))
        try:
            stream_rate = loader_rate(streamed, B, args.loader_seconds)
        finally:
            streamed.close()
        train_rate = model_rate(cfg, args.device, args.model_steps)
        result = {
            "device": args.device, "profile": args.profile, "corpus_mb": sum(p.stat().st_size for p in files) / 1e6,
            "docs": cold.meta["docs"], "tokens": tokens, "bytes_per_token": cold.meta["bytes"] / tokens,
            "cold_total_s": t_cold, "tokenizer_train_s": t_cold - t_tok, "tokenize_s": t_tok,
            "tokenize_tokens_per_s_cold": tokens / t_tok, "warm_open_s": t_warm, "tokens_per_s_warm": tokens / t_warm,
            "batch": B, "seq_len": cfg.data.seq_len,
            "loader_tokens_per_s_cached": cached_rate, "loader_tokens_per_s_streamed": stream_rate,
            "model_train_tokens_per_s": train_rate,
            "model": f"{cfg.model.arch} n_embd={cfg.model.n_embd} layers={cfg.model.n_prelude}+{cfg.model.n_core}+{cfg.model.n_coda} r={cfg.train.r_mean} k={cfg.train.k}",
            "data_is_bottleneck": min(cached_rate, stream_rate) < train_rate,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=1))
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
