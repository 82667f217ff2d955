"""Sequential against parallel (diffusion-style) decoding, side by side, on one or more models.

    python -m recurlab.bench.parallel runs/text-run huginn-random --r 32 --new-tokens 64
    python -m recurlab.bench.parallel runs/cpu-demo --samplers parallel,parallel:inner=4 --threads 1
    python -m recurlab.bench.parallel huginn-random --device cuda
    python -m recurlab.bench.parallel runs/cpu-demo --heldout 200 --samplers parallel --speed 0   # accuracy only

A model is a run directory (or name in --runs-dir), a Huginn-format folder, or `huginn-random`: a
random checkpoint written in the Huginn folder format at the reference benchmark's shape (width
256, 4 heads, 2 + 4 + 2 layers, intermediate 512, vocabulary 512) and opened with open_model.
Every decoder runs greedily from a zero latent start with no stop token, so each produces
`--new-tokens` tokens; tokens/s counts those over prefill plus decode, the median of `--repeats`
timed calls after one untimed warm-up. For each parallel setting it reports the speed-up, the
sequential core passes per token (sequential decoding: r) and the quality cost: the fraction of
positions whose token differs from sequential greedy decoding, and how many agree before the first
difference. The load average is recorded with the numbers (ratios matter on a shared machine).
With `--heldout N` on an embedded-task run it also decodes N held-out prompts per level at the
run's r_mean (or --heldout-r), sequentially and with each parallel setting, in batches of 64
prompts of mixed lengths, and reports exact match per level and sequential core passes per token.
Results are printed and written as JSON to --out (a new file when it exists, never replaced).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from recurlab.bench.results import bench_parser, load_average, write_result
from recurlab.engine import GenerateOptions, open_model
from recurlab.errors import InferenceError, UserError
from recurlab.families.writers import write_random_huginn
from recurlab.tasks import get_task

HUGINN_BENCH_SHAPE = dict(n_embd=256, n_heads=4, n_layers_in_prelude=2, n_layers_in_recurrent_block=4,
                          n_layers_in_coda=2, intermediate_size=512, vocab_size=512, block_size=1024)
PROMPTS = {
    "text": "Ada has 12 apples and buys 3 bags with 7 apples each. How many apples does she have now?",
    "task": "3102.0213.2310.1032=",
}


def open_bench_model(name: str, args, workdir: Path):
    """The OpenedModel, its label saying what it is (a run and its data, a folder, a random shape)."""

    if name == "huginn-random":
        path = write_random_huginn(workdir / "huginn-random", **HUGINN_BENCH_SHAPE, seed=args.seed)
        shape = ",".join(f"{k}={v}" for k, v in HUGINN_BENCH_SHAPE.items())
        label = f"random Huginn-format checkpoint ({shape})"
    else:
        path = Path(name) if Path(name).exists() else Path(args.runs_dir) / name
        label = None
    opened = open_model(path, device=args.device)
    if label is None:
        label = f"run {opened.label} ({opened.cfg.data.source} data)" if opened.run is not None else f"model folder {path}"
    opened.label = label
    return opened


def task_run(opened) -> bool:
    return opened.run is not None and opened.cfg.data.source == "task"


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


def accuracy_table(engine, cfg, args) -> dict:
    """Held-out exact match per level, sequential against each parallel setting, at r_mean."""
    task = get_task(cfg.data.task)
    r = args.heldout_r or cfg.train.r_mean
    levels = list(cfg.data.difficulties)
    rows = []
    print(f"\nheld-out exact match at r={r}, {args.heldout} prompts per level, load average {os.getloadavg()[0]:.1f}", flush=True)
    for spec in [None, *args.samplers]:
        acc, passes, tokens, t0 = {}, 0.0, 0, time.perf_counter()
        for level in levels:
            examples = task.heldout(level, args.heldout)
            correct = 0
            for i in range(0, len(examples), 64):
                chunk = examples[i:i + 64]
                opts = GenerateOptions(r=r, init_scale=0.0, sampler=spec, max_new_tokens=max(len(ex.answer) for ex in chunk) + 1)
                res = engine.generate([ex.prompt for ex in chunk], opts)
                correct += sum(task.score(ex, text) for ex, text in zip(chunk, res.texts))
                if res.parallel:
                    passes += sum(row["core_passes"] for row in res.parallel["rows"])
                    tokens += sum(row["tokens"] for row in res.parallel["rows"])
            acc[level] = correct / len(examples)
        ppt = passes / tokens if spec else float(r)
        name = "sequential" if spec is None else GenerateOptions(r=r, sampler=spec).validate().sampler.spec()
        rows.append({"sampler": name, "accuracy": {str(k): round(v, 4) for k, v in acc.items()},
                     "passes_per_token": round(ppt, 3), "fewer_passes": round(r / ppt, 2),
                     "seconds": round(time.perf_counter() - t0, 1)})
        print(f"  {name[:60]:<60} " + "  ".join(f"acc@{k} {v:6.1%}" for k, v in acc.items())
              + f"  passes/token {ppt:5.2f} ({r / ppt:.2f}x fewer)", flush=True)
    base = rows[0]["accuracy"]
    for row in rows[1:]:
        row["max_drop_points"] = round(max(100 * (base[k] - v) for k, v in row["accuracy"].items()), 2)
    return {"r": r, "per_level": args.heldout, "levels": levels, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = bench_parser("parallel", __doc__, out="bench-results/parallel.json")
    p.add_argument("models", nargs="+", help="run names or directories, Huginn folders, or huginn-random")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--r", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--samplers", default="parallel,parallel:inner=4",
                   help="parallel sampler specs separated by commas; each starts with 'parallel'")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--speed", type=int, default=1, help="0 skips the speed comparison")
    p.add_argument("--heldout", type=int, default=0, help="held-out prompts per level for the accuracy table (task runs)")
    p.add_argument("--heldout-r", type=int, default=0, help="r for the accuracy table (default: the run's r_mean)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.samplers = [s for s in _split_plain(args.samplers) if s]

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available here; run with --device cpu", file=sys.stderr)
        return 0
    torch.set_num_threads(args.threads)
    result = {"r": args.r, "new_tokens": args.new_tokens, "device": args.device, "threads": args.threads,
              "load_average_before": load_average(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "models": []}
    if args.device.startswith("cuda"):
        result["gpu"] = torch.cuda.get_device_name()
    try:
        for spec in args.samplers:
            GenerateOptions(r=args.r, sampler=spec).validate()  # bad specs fail before any model loads
        with tempfile.TemporaryDirectory(prefix="recurlab-bench-parallel-") as tmp:
            for name in args.models:
                opened = open_bench_model(name, args, Path(tmp))
                prompt = PROMPTS["task"] if task_run(opened) else PROMPTS["text"]
                entry = bench_model(opened.engine, opened.label, prompt, args) if args.speed else {"model": opened.label}
                if args.heldout:
                    if not task_run(opened):
                        raise InferenceError(f"--heldout needs an embedded-task run; {name} is not one")
                    entry["accuracy"] = accuracy_table(opened.engine, opened.cfg, args)
                result["models"].append(entry)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = write_result(args.out, result, keep_earlier=True)
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
