"""Sequential against parallel (diffusion-style) decoding, side by side, on one or more models.

    python -m recurlab.bench.parallel runs/text-run huginn-random --r 32 --new-tokens 64
    python -m recurlab.bench.parallel runs/cpu-demo --samplers parallel,parallel:inner=4 --threads 1
    python -m recurlab.bench.parallel huginn-random --device cuda

A model is a run directory (or name in --runs-dir), a Huginn-format folder, or `huginn-random`: a
random checkpoint written in the Huginn folder format at the reference benchmark's shape (width
256, 4 heads, 2 + 4 + 2 layers, intermediate 512, vocabulary 512) and opened with open_huginn.
Every decoder runs greedily from a zero latent start with no stop token, so each produces
`--new-tokens` tokens; tokens/s counts those over prefill plus decode, the median of `--repeats`
timed calls after one untimed warm-up. For each parallel setting it reports the speed-up, the
sequential core passes per token (sequential decoding: r) and the quality cost: the fraction of
positions whose token differs from sequential greedy decoding, and how many agree before the first
difference. The load average is recorded with the numbers (ratios matter on a shared machine).
Results are printed and written as JSON to --out (a new file when it exists, never replaced).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HUGINN_BENCH_SHAPE = dict(n_embd=256, n_heads=4, n_layers_in_prelude=2, n_layers_in_recurrent_block=4,
                          n_layers_in_coda=2, intermediate_size=512, vocab_size=512, block_size=1024)
PROMPTS = {
    "text": "Ada has 12 apples and buys 3 bags with 7 apples each. How many apples does she have now?",
    "task": "3102.0213.2310.1032=",
}


def open_model(name: str, args, workdir: Path):
    """-> (model, tokenizer, label, prompt)."""
    from recurlab.engine import open_run
    from recurlab.huginn import open_huginn
    from recurlab.rundir import RunDir

    if name == "huginn-random":
        from recurlab.huginn.writer import write_random_huginn

        folder = write_random_huginn(workdir / "huginn-random", **HUGINN_BENCH_SHAPE, seed=args.seed)
        model, tok, _ = open_huginn(folder, device=args.device)
        shape = ",".join(f"{k}={v}" for k, v in HUGINN_BENCH_SHAPE.items())
        return model, tok, f"random Huginn-format checkpoint ({shape})", PROMPTS["text"]
    path = Path(name)
    if (path / "config.json").exists():
        model, tok, _ = open_huginn(path, device=args.device)
        return model, tok, f"Huginn folder {path}", PROMPTS["text"]
    run = RunDir(path) if RunDir(path).exists() else RunDir(Path(args.runs_dir) / name)
    model, tok, cfg, ckpt = open_run(run, device=args.device)
    prompt = PROMPTS["task"] if cfg.data.source == "task" else PROMPTS["text"]
    return model, tok, f"run {run.name} step {ckpt.step} ({cfg.data.source} data)", prompt


def timed(engine, prompt: str, opts, repeats: int):
    engine.generate(prompt, opts)  # warm-up
    runs = [engine.generate(prompt, opts) for _ in range(repeats)]
    rates = [res.tokens_per_s for res in runs]
    return runs[rates.index(statistics.median_low(rates))], rates


def agreement(a: list[int], b: list[int]) -> tuple[float, int]:
    """(fraction of positions that differ, tokens equal before the first difference)."""
    n = max(len(a), len(b))
    differ = sum(1 for i in range(n) if i >= len(a) or i >= len(b) or a[i] != b[i])
    prefix = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
    return (differ / n if n else 0.0), prefix


def bench_model(engine, label: str, prompt: str, args) -> dict:
    from recurlab.engine import GenerateOptions

    common = dict(r=args.r, max_new_tokens=args.new_tokens, temperature=0.0, init_scale=0.0, stop_ids=())
    seq, seq_rates = timed(engine, prompt, GenerateOptions(**common), args.repeats)
    rows = [{"sampler": "sequential", "tokens_per_s": round(seq.tokens_per_s, 2), "all_tokens_per_s": [round(x, 2) for x in seq_rates],
             "speedup": 1.0, "passes_per_token": float(args.r), "differ_fraction": 0.0, "agree_prefix": seq.n_tokens}]
    print(f"\n{label}\n  prompt {prompt!r}, r={args.r}, {args.new_tokens} new tokens, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    print(f"  {'sampler':<58} {'tok/s':>8} {'x seq':>6} {'passes/tok':>10} {'differ':>7} {'agree':>5}", flush=True)
    print(f"  {'sequential':<58} {seq.tokens_per_s:8.1f} {1.0:6.2f} {args.r:10.2f} {0.0:7.1%} {seq.n_tokens:5d}", flush=True)
    for spec in args.samplers:
        res, rates = timed(engine, prompt, GenerateOptions(**common, sampler=spec), args.repeats)
        differ, prefix = agreement(res.generated_ids[0], seq.generated_ids[0])
        p = res.parallel
        rows.append({"sampler": p["config"]["spec"], "tokens_per_s": round(res.tokens_per_s, 2),
                     "all_tokens_per_s": [round(x, 2) for x in rates], "speedup": round(res.tokens_per_s / seq.tokens_per_s, 3),
                     "passes_per_token": round(p["passes_per_token"], 3), "outer_steps": p["outer_steps"],
                     "mean_iterations": round(res.mean_iterations, 2), "differ_fraction": round(differ, 4), "agree_prefix": prefix})
        print(f"  {p['config']['spec'][:58]:<58} {res.tokens_per_s:8.1f} {rows[-1]['speedup']:6.2f} "
              f"{p['passes_per_token']:10.2f} {differ:7.1%} {prefix:5d}", flush=True)
    return {"model": label, "prompt": prompt, "params": engine.model.num_params(), "rows": rows,
            "sequential_text": seq.text, "load_average_after": round(os.getloadavg()[0], 2)}


def fresh_path(path: Path) -> Path:
    """`path`, or path-2, path-3 ... when it exists: a benchmark never replaces an earlier result."""
    n, out = 1, path
    while out.exists():
        n += 1
        out = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m recurlab.bench.parallel", description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="run names or directories, Huginn folders, or huginn-random")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--r", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--samplers", default="parallel,parallel:inner=4",
                   help="parallel sampler specs separated by commas; each starts with 'parallel'")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench-results/parallel.json")
    args = p.parse_args(argv)
    args.samplers = [s for s in _split_plain(args.samplers) if s]

    import torch

    from recurlab.engine import Engine, GenerateOptions
    from recurlab.errors import USER_ERRORS

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available here; run with --device cpu", file=sys.stderr)
        return 0
    torch.set_num_threads(args.threads)
    result = {"r": args.r, "new_tokens": args.new_tokens, "device": args.device, "threads": args.threads,
              "torch": torch.__version__, "cpus": os.cpu_count(), "load_average_before": round(os.getloadavg()[0], 2),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "models": []}
    if args.device.startswith("cuda"):
        result["gpu"] = torch.cuda.get_device_name()
    try:
        for spec in args.samplers:
            GenerateOptions(r=args.r, sampler=spec).validate()  # bad specs fail before any model loads
        with tempfile.TemporaryDirectory(prefix="recurlab-bench-parallel-") as tmp:
            for name in args.models:
                model, tok, label, prompt = open_model(name, args, Path(tmp))
                result["models"].append(bench_model(Engine(model, tok, device=args.device), label, prompt, args))
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = fresh_path(Path(args.out))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwritten to {out}", file=sys.stderr)
    return 0


def _split_plain(text: str) -> list[str]:
    """'parallel,parallel:inner=4' -> the two specs: a new spec starts at each 'parallel'."""
    specs: list[str] = []
    for part in text.split(","):
        if part.strip().startswith(("parallel", "sequential")) or not specs:
            specs.append(part.strip())
        else:
            specs[-1] += "," + part.strip()
    return specs


if __name__ == "__main__":
    sys.exit(main())
