"""Decode speed of a Huginn-0125-shaped model (random weights) through recurlab's inference engine.

    python -m recurlab.bench.huginn --device cuda --out bench-results/huginn.json
    python -m recurlab.bench.huginn --device cuda --source checkpoint --workdir /tmp/hg   # write 7.8 GB, load it
    python -m recurlab.bench.huginn --device cpu --shape tiny                              # smoke run

`--source direct` (default) builds the model at the full shape on the GPU with random weights;
`--source checkpoint` first writes a random bf16 checkpoint in the Huginn folder format and opens
it with `open_model`, also timing the write and the load. Either way, decoding is measured with
`recurlab.engine.Engine` at batch 1, greedy, zero latent start, no stop token, r = 32 by default:
decode tokens/s = generated tokens / decode seconds (the prompt's prefill is reported apart).
It also times the engine's static-shape decoder (`StaticDecoder`, one CUDA graph per token) and
reports how many of its greedy tokens match the engine's before the first difference.
Without CUDA (and `--device cuda`) it prints one line and exits 0. The result is printed as JSON
and written to `--out`.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

from recurlab.bench.results import bench_parser, write_result
from recurlab.engine import Engine, GenerateOptions, open_model
from recurlab.engine.static_decode import StaticDecoder
from recurlab.families.folder import folder_tokenizer
from recurlab.families.huginn import DOWNLOAD_HINT, read_huginn_config
from recurlab.families.tensors import empty_model
from recurlab.families.writers import write_random_huginn

SHAPES = {
    "huginn-0125": dict(n_embd=5280, n_heads=55, n_layers_in_prelude=2, n_layers_in_recurrent_block=4,
                        n_layers_in_coda=2, intermediate_size=17920, vocab_size=65536, block_size=4096),
    "tiny": dict(n_embd=64, n_heads=4, n_layers_in_prelude=1, n_layers_in_recurrent_block=2, n_layers_in_coda=1,
                 intermediate_size=128, vocab_size=512, block_size=256),
}
PROMPT = "The capital of Westphalia is Muenster, a city with a long history. Question: what is 12 + 34? Answer:"


def kv_bytes_per_token(cfg, r: int, elem: int) -> int:
    """Keys and values of every (layer, iteration) for one token: (P + R*r + C) * 2 * d * bytes."""
    return (cfg.n_prelude + cfg.n_core * r + cfg.n_coda) * 2 * cfg.n_embd * elem


def random_model(cfg, device, dtype, seed: int):
    """The model at `cfg`'s shape, filled in place on `device` (no CPU copy, no disk)."""

    model = empty_model(cfg, device, dtype)
    gen = torch.Generator(device=device).manual_seed(seed)
    std = math.sqrt(2 / (5 * cfg.n_embd))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.normal_(1.0, 0.2, generator=gen)
            elif name.endswith("qk_bias"):
                p.normal_(0.0, 0.5, generator=gen)
            else:
                p.normal_(0.0, std, generator=gen)
    return model.eval()


def build(args, workdir: Path):
    # torch and yaml: loaded only when this runs

    folder = workdir / f"random-{args.shape}"
    info = {}
    if args.source == "checkpoint":
        t0 = time.perf_counter()
        write_random_huginn(folder, **SHAPES[args.shape], dtype="bfloat16", seed=args.seed)
        info["write_seconds"] = round(time.perf_counter() - t0, 2)
        info["checkpoint_bytes"] = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
        t0 = time.perf_counter()
        opened = open_model(folder, device=args.device, dtype=torch.bfloat16)
        model, tok, cfg = opened.model, opened.tokenizer, opened.cfg
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        info["load_seconds"] = round(time.perf_counter() - t0, 2)
        info["source"] = "random checkpoint written in the Huginn format (bf16 safetensors) and loaded with open_model"
        return model, tok, cfg.model, info
    write_random_huginn(folder, **SHAPES[args.shape], seed=args.seed, weights=False)
    spec = read_huginn_config(folder)
    tok = folder_tokenizer(spec, DOWNLOAD_HINT)
    model = random_model(spec.model, torch.device(args.device), torch.bfloat16, args.seed)
    info["source"] = f"model built directly at the {args.shape} shape with random bf16 weights (nothing written to disk)"
    return model, tok, spec.model, info


def measure(args, model, tok, mcfg) -> dict:
    engine = Engine(model, tok, device=args.device)
    opts = GenerateOptions(r=args.r, max_new_tokens=args.new_tokens, temperature=0.0, init_scale=0.0, stop_ids=[])
    engine.generate(PROMPT, opts)  # warm-up: the first pass over fresh shapes is slower (allocator, kernels)
    runs = [engine.generate(PROMPT, opts) for _ in range(args.repeats)]
    engine_ids = runs[0].token_ids
    rates = [res.n_tokens / res.decode_seconds for res in runs]
    mid = sorted(range(len(runs)), key=rates.__getitem__)[len(runs) // 2]
    best = runs[mid]
    elem = next(model.parameters()).element_size()
    n_params = model.num_params()
    out = {
        "decode_tokens_per_s": round(rates[mid], 3),
        "decode_tokens_per_s_all": [round(x, 3) for x in rates],
        "ms_per_token": round(1000 / rates[mid], 2),
        "core_block_passes_per_s": round(rates[mid] * args.r * mcfg.n_core, 1),
        "prefill_seconds": round(best.prefill_seconds, 4),
        "prompt_tokens": len(best.prompt_ids[0]),
        "new_tokens": best.n_tokens,
        "params": n_params,
        "weights_gib": round(n_params * elem / 2**30, 3),
        "kv_cache_bytes_allocated": best.cache_bytes,
        "kv_bytes_per_token": kv_bytes_per_token(mcfg, args.r, elem),
        **measure_static(args, model, tok, engine_ids),
    }
    if args.device.startswith("cuda"):
        out["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
        out["gpu"] = torch.cuda.get_device_name()
    return out


def measure_static(args, model, tok, engine_ids: list[int]) -> dict:
    """The engine's static-shape decoder (one CUDA graph per token on CUDA, eager on CPU). Its
    decode rate is N / (time(2N tokens) - time(N tokens)), so prefill and capture cancel out."""

    mode = "graph" if args.device.startswith("cuda") else "eager"
    ids = tok.encode(PROMPT)
    n = args.new_tokens
    dec = StaticDecoder(model, max_len=len(ids) + 2 * n + 1, r=args.r, mode=mode)

    def timed(k: int) -> tuple[float, list[int]]:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = dec.generate(ids, k)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0, out

    timed(n)  # warm-up
    t1, out = timed(n)
    t2, _ = timed(2 * n)
    return {
        "static_decoder_mode": mode,
        "static_decode_tokens_per_s": round(n / (t2 - t1), 3) if t2 > t1 else None,
        # greedy tokens shared with the engine before the first difference; random bf16 weights give
        # flat logits, so a near-tie may flip a token between the two kernels' rounding (fp32 agrees)
        "static_same_prefix_as_engine": next((i for i, (a, b) in enumerate(zip(out, engine_ids)) if a != b), len(out)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser("huginn", __doc__, out="")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="huginn-0125")
    ap.add_argument("--source", choices=["direct", "checkpoint"], default="direct")
    ap.add_argument("--r", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default="", help="where the random checkpoint goes (default: a temporary folder)")
    args = ap.parse_args(argv)

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench huginn: CUDA is not available here; this benchmark needs a GPU (skipped)")
        return 0
    if not args.device.startswith("cuda") and args.shape != "tiny":
        print("bench huginn: the full Huginn shape runs only on CUDA; use --shape tiny for a CPU smoke run")
        return 0

    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir or None) as tmp:
        t0 = time.perf_counter()
        model, tok, mcfg, info = build(args, Path(tmp))
        info["build_seconds"] = round(time.perf_counter() - t0, 2)
        result = {
            "benchmark": "huginn_decode",
            "shape": args.shape,
            "device": args.device,
            "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
            "batch": 1,
            "r": args.r,
            "engine": "recurlab.engine.Engine (KV cache, greedy, init_scale 0)",
            **info,
            **measure(args, model, tok, mcfg),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        write_result(args.out, result, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
