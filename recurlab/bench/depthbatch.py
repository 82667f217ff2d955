"""Depth batching against a batch that waits for its slowest token, on N prompts under an exit rule.

    python -m recurlab.bench.depthbatch runs/cpu-demo --prompts 256 --r 16 --exit kl:5e-4 --batches 1,8,32,64
    python -m recurlab.bench.depthbatch runs/cpu-demo --threads 1,2 --batches 32 --load 20 --eval 64
    python -m recurlab.bench.depthbatch runs/cpu-demo --batches 8,32 --breakdown 32
    python -m recurlab.bench.depthbatch --random huginn --r 16 --exit kl:5e-4 --device cuda
    python -m recurlab.bench.depthbatch --random ouro --exit gate:0.5

For every batch size and thread count, the same prompts run four ways:
  fixed     (a) left-padded batches at fixed r (no exit);
  padded    (b) left-padded batches under the exit rule: a batch runs until its slowest token exits;
  depth     (c) depth batching (recurlab.engine.depth_batch): every token leaves at its own exit, a
                finished prompt frees its row for the next;
  alone     each prompt alone under the exit rule (batch 1).
Each prints tokens/s over decode time (prefill apart: it runs at r in every mode) and over the whole
call, and the mean iterations per generated token. The theoretical adaptive speedup is r over the
measured mean iterations; the achieved share is (fixed time / depth time) over it, from decode time
and from the whole call. Modes alternate within each round (`--rounds`) and the best round counts,
so that all see the same machine load.

Prompts: an embedded-task run's held-out prompts, taken round-robin over its levels (repeats once
the distinct ones run out, which the report says); a model folder or `--random` gets random prompts
of 4 to 24 tokens. Generation is greedy from a zero latent start and stops at the end-of-sequence
token or after `--new-tokens`; `--no-stop` always generates `--new-tokens`.

`--breakdown B,...` also runs depth batching once at those batch sizes under torch's profiler and
prints the time of each of its stages (prefill, prelude, core, coda, exit check, retire), and a
fixed-r batch at the two whole depths around the measured mean iterations, interpolated: the
measured time of an ideal that runs every token for the mean iterations, with its prelude and coda
once per token. It prints depth batching's share of that ideal, and the most any scheduler could
reach with the same core and coda passes (prelude, bookkeeping and exit checks costing nothing).

`--load RATE` also runs a load test for (b) and (c): `--requests` prompts arrive as a Poisson process
of RATE per second; (b) starts a batch of up to B waiting prompts whenever the previous batch is done,
(c) admits prompts as rows free. It prints p50 and p95 latency (arrival to last token) and tokens/s.
`--eval N` times `recurlab eval --tasks embedded --exit ... --r R` on N documents per level, padded
against depth batching, alternating, and checks that the results are equal.
The report (machine, threads, load average, commit) is printed and written as JSON to `--out`.
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from recurlab.bench.results import bench_parser, load_average, write_result
from recurlab.engine import GenerateOptions, open_model
from recurlab.engine.depth_batch import DepthBatcher
from recurlab.errors import InferenceError
from recurlab.evaluation.runner import EvalSettings, run_eval
from recurlab.families.writers import write_random_huginn, write_random_ouro
from recurlab.rundir import RunDir
from recurlab.tasks import get_task

MODES = ("fixed", "padded", "depth", "alone")


def open_bench_model(args, workdir: Path):
    """The OpenedModel, its label saying what it is (a random folder's shape)."""

    if args.random == "huginn":
        shape = dict(n_embd=256, n_heads=4, n_layers_in_prelude=2, n_layers_in_recurrent_block=4,
                     n_layers_in_coda=2, intermediate_size=512, vocab_size=512, block_size=1024)
        path = write_random_huginn(workdir / "huginn", **shape, seed=args.seed)
        label = "random Huginn-format folder (" + ",".join(f"{k}={v}" for k, v in shape.items()) + ")"
    elif args.random == "ouro":
        path = write_random_ouro(workdir / "ouro", hidden=256, layers=4, heads=8, kv_heads=4, mlp=768, vocab=512,
                                 steps=4, gate_bias=args.gate_bias, seed=args.seed)
        label = f"random Ouro-format folder (hidden 256, 4 layers, 8 heads, 4 kv heads, 4 steps, gate bias {args.gate_bias:g})"
    else:
        path = Path(args.model) if Path(args.model).exists() else Path(args.runs_dir) / args.model
        label = None
    opened = open_model(path, device=args.device)
    opened.label = label or f"{opened.label} step {opened.step}"
    return opened


def workload(tok, cfg, n: int, seed: int) -> tuple[list[str], int]:
    """N prompts and how many of them are distinct."""
    if cfg is not None and cfg.data.source == "task":
        task = get_task(cfg.data.task)
        levels = [task.heldout(d, n, seed=seed) for d in cfg.data.difficulties]
        pool = [ex.prompt for group in zip(*levels) for ex in group]
        pool += [ex.prompt for lv in levels for ex in lv[min(len(x) for x in levels):]]
        prompts = [pool[i % len(pool)] for i in range(n)]
        return prompts, len(set(prompts))
    rng = random.Random(seed)
    vocab = [i for i in range(min(getattr(tok, "vocab_size", 256) or 256, 256)) if i != getattr(tok, "eos_id", -1)]
    prompts = [tok.decode([rng.choice(vocab) for _ in range(rng.randint(4, 24))]) for _ in range(n)]
    return prompts, len(set(prompts))


def options(args, mode: str, batch: int):
    exit_rule = None if mode == "fixed" else args.exit
    batching = "depth" if mode == "depth" else "padded"
    return GenerateOptions(r=args.r, max_new_tokens=args.new_tokens, init_scale=0.0, exit=exit_rule,
                           stop_ids=() if args.no_stop else None, batching=batching,
                           batch=1 if mode == "alone" else batch).validate()


def timed(engine, prompts, opts) -> dict:
    t0 = time.perf_counter()
    res = engine.generate(prompts, opts)
    wall = time.perf_counter() - t0
    return {"seconds": wall, "prefill_seconds": res.prefill_seconds, "decode_seconds": wall - res.prefill_seconds,
            "tokens": res.n_tokens, "mean_iterations": res.mean_iterations, "generated": res.generated_ids,
            "iterations": res.iterations, "depth": res.depth}


def compare_modes(engine, prompts, args, batch: int) -> dict:
    modes = [m for m in MODES if m != "alone" or args.alone] if batch > 1 else ["fixed", "depth", "alone"]
    best: dict[str, dict] = {}
    for _ in range(args.rounds):
        for mode in modes:
            got = timed(engine, prompts, options(args, mode, batch))
            if mode not in best or got["decode_seconds"] < best[mode]["decode_seconds"]:
                best[mode] = got
    row = {"batch": batch}
    for mode, got in best.items():
        row[mode] = {"tokens_per_s": got["tokens"] / got["seconds"],
                     "decode_tokens_per_s": got["tokens"] / got["decode_seconds"],
                     "seconds": got["seconds"], "decode_seconds": got["decode_seconds"],
                     "prefill_seconds": got["prefill_seconds"], "tokens": got["tokens"],
                     "mean_iterations": got["mean_iterations"], "depth": got["depth"]}
    depth, fixed = best["depth"], best["fixed"]
    ideal = args.r / depth["mean_iterations"] if depth["mean_iterations"] else float("nan")
    row["ideal_speedup"] = ideal
    row["share_of_ideal_decode"] = (fixed["decode_seconds"] / depth["decode_seconds"]) / ideal
    row["share_of_ideal_total"] = (fixed["seconds"] / depth["seconds"]) / ideal
    if "padded" in best:
        row["depth_over_padded_decode"] = best["padded"]["decode_seconds"] / depth["decode_seconds"]
        row["depth_over_padded_total"] = best["padded"]["seconds"] / depth["seconds"]
        row["padded_equals_depth"] = (best["padded"]["generated"] == depth["generated"]
                                      and best["padded"]["iterations"] == depth["iterations"])
    if "alone" in best:
        row["alone_equals_depth"] = (best["alone"]["generated"] == depth["generated"]
                                     and best["alone"]["iterations"] == depth["iterations"])
    return row


STAGES = ("prefill", "prelude", "core", "coda", "exit_check", "retire")


def breakdown(engine, prompts, args, batch: int, row: dict) -> dict:
    """Depth batching's stages under torch's profiler, and a fixed-r batch at the mean depth."""
    from torch.profiler import ProfilerActivity, profile  # only for --breakdown

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        timed(engine, prompts, options(args, "depth", batch))
    seconds = {name: 0.0 for name in STAGES}
    for ev in prof.key_averages():
        if ev.key.startswith("depth.") and ev.key[6:] in seconds:
            seconds[ev.key[6:]] = ev.cpu_time_total / 1e6
    mean = row["depth"]["mean_iterations"]
    lo, hi = max(1, int(mean)), max(1, int(mean)) + 1
    at = {}
    for r in (lo, hi):
        fixed_args = type(args)(**{**vars(args), "r": r})
        at[r] = min((timed(engine, prompts, options(fixed_args, "fixed", batch)) for _ in range(args.rounds)),
                    key=lambda got: got["decode_seconds"])["decode_seconds"]
    ideal = at[lo] + (mean - lo) * (at[hi] - at[lo])
    depth = row["depth"]["decode_seconds"]
    # the profiler slows every stage; its shares of the profiled decode scale the unprofiled time.
    # Rows the scheduler left empty cost a whole pass too: the bound takes the passes as they ran.
    profiled = sum(v for k, v in seconds.items() if k != "prefill")
    floor = (seconds["core"] + seconds["coda"]) / profiled * depth
    return {"stage_seconds": seconds, "profiled_decode_seconds": profiled,
            "fixed_at_mean_decode_seconds": ideal, "fixed_at": at,
            "share_of_measured_ideal": ideal / depth, "core_and_coda_seconds": floor,
            "most_share_of_ideal": (row["fixed"]["decode_seconds"] / floor) / row["ideal_speedup"],
            "most_over_padded": row["padded"]["decode_seconds"] / floor if "padded" in row else None}


def poisson_arrivals(n: int, rate: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        out.append(t)
    return out


def load_padded(engine, encoded_prompts, arrivals, opts, batch: int) -> list[float]:
    """Batches of up to `batch` arrived prompts, one after another; latency = arrival to last token."""
    latencies = [0.0] * len(arrivals)
    t0, nxt = time.perf_counter(), 0
    while nxt < len(arrivals):
        now = time.perf_counter() - t0
        if arrivals[nxt] > now:
            time.sleep(arrivals[nxt] - now)
            now = arrivals[nxt]
        group = [i for i in range(nxt, len(arrivals)) if arrivals[i] <= now][:batch]
        nxt = group[-1] + 1
        last = {i: None for i in group}
        stream = engine.stream([encoded_prompts[i] for i in group], opts)
        for ev in stream:
            last[group[ev.row]] = time.perf_counter() - t0
        end = time.perf_counter() - t0
        for i in group:
            latencies[i] = (last[i] if last[i] is not None else end) - arrivals[i]
    return latencies


def load_depth(engine, encoded, arrivals, opts, batch: int) -> list[float]:
    stop = set(opts.stop_ids) if opts.stop_ids is not None else {engine.tokenizer.eos_id}
    batcher = DepthBatcher(engine.model, opts, batch, max(len(x) for x in encoded) + opts.max_new_tokens, stop)
    latencies = [0.0] * len(arrivals)
    last = [None] * len(arrivals)
    t0, nxt = time.perf_counter(), 0
    while nxt < len(arrivals) or batcher.busy:
        now = time.perf_counter() - t0
        if not batcher.busy and arrivals[nxt] > now:
            time.sleep(arrivals[nxt] - now)
            now = arrivals[nxt]
        while nxt < len(arrivals) and arrivals[nxt] <= now:
            batcher.submit(encoded[nxt])
            nxt += 1
        for ev in batcher.step():
            t = time.perf_counter() - t0
            if ev.index < len(batcher.results[ev.request].tokens):
                last[ev.request] = t
            if ev.finished:
                latencies[ev.request] = (last[ev.request] if last[ev.request] is not None else t) - arrivals[ev.request]
    return latencies


def load_test(engine, prompts, args, batch: int) -> dict:
    arrivals = poisson_arrivals(args.requests, args.load, args.seed)
    encoded = [engine.encode(prompts[i % len(prompts)]) for i in range(args.requests)]
    out = {"rate_per_s": args.load, "requests": args.requests, "batch": batch}
    for mode in ("padded", "depth"):
        opts = options(args, mode, batch)
        t0 = time.perf_counter()
        if mode == "padded":
            strings = [prompts[i % len(prompts)] for i in range(args.requests)]
            lat = load_padded(engine, strings, arrivals, opts, batch)
        else:
            lat = load_depth(engine, encoded, arrivals, opts, batch)
        q = statistics.quantiles(lat, n=20)
        out[mode] = {"p50_s": statistics.median(lat), "p95_s": q[18], "mean_s": statistics.fmean(lat),
                     "wall_s": time.perf_counter() - t0}
    out["p50_reduction"] = 1 - out["depth"]["p50_s"] / out["padded"]["p50_s"]
    out["p95_reduction"] = 1 - out["depth"]["p95_s"] / out["padded"]["p95_s"]
    return out


def eval_test(run_path: Path, args, source) -> dict:
    """`recurlab eval --tasks embedded --exit ... --r R` padded against depth batching, alternating."""

    run = RunDir(run_path)
    out = {"documents_per_level": args.eval, "rounds": args.rounds}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.rounds):
            for batching in ("padded", "depth"):
                settings = EvalSettings(tasks="embedded", rs=[args.r], exit=args.exit, limit=args.eval,
                                        batch_size=args.eval_batch, batching=batching).validate()
                t0 = time.perf_counter()
                res = run_eval(settings, run=run, out_dir=Path(tmp) / f"{batching}-{k}", source=source)
                secs = time.perf_counter() - t0
                rows = [(r["task"], r["metric"], r["value"], r.get("mean_iterations")) for r in res.rows]
                prev = results.get(batching)
                if prev is None or secs < prev["seconds"]:
                    results[batching] = {"seconds": secs, "rows": rows}
    out.update(results)
    out["speedup"] = results["padded"]["seconds"] / results["depth"]["seconds"]
    out["same_results"] = results["padded"]["rows"] == results["depth"]["rows"]
    return out


def print_row(row: dict, threads: int) -> None:
    for mode in MODES:
        if mode in row:
            m = row[mode]
            print(f"  threads {threads} batch {row['batch']:>3} {mode:>6}: {m['decode_tokens_per_s']:8.1f} decode tok/s "
                  f"{m['tokens_per_s']:8.1f} tok/s  {m['mean_iterations']:.2f} it/token", flush=True)
    line = (f"  -> ideal {row['ideal_speedup']:.2f}x, depth reaches {row['share_of_ideal_decode']:.0%} of it "
            f"(decode; {row['share_of_ideal_total']:.0%} whole call)")
    if "depth_over_padded_decode" in row:
        line += f", {row['depth_over_padded_decode']:.2f}x today's batched exit (decode; {row['depth_over_padded_total']:.2f}x whole)"
    print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser("depthbatch", __doc__, out="bench-results/depthbatch.json")
    ap.add_argument("model", nargs="?", help="run name or directory, or a model folder")
    ap.add_argument("--random", choices=("huginn", "ouro"), help="a random Huginn-shaped or Ouro-format folder")
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--r", type=int, default=16)
    ap.add_argument("--exit", default="kl:5e-4")
    ap.add_argument("--batches", default="1,8,32,64")
    ap.add_argument("--threads", default="1", help="comma-separated torch thread counts, e.g. 1,2")
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--no-stop", action="store_true")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--alone", action="store_true", help="also time batch 1 with exit at every batch size")
    ap.add_argument("--breakdown", default="",
                    help="batch sizes among --batches (e.g. 32) at which to time depth batching's stages and a fixed batch at the mean depth")
    ap.add_argument("--load", type=float, default=0.0, help="requests per second for the load test (0: none)")
    ap.add_argument("--requests", type=int, default=128)
    ap.add_argument("--load-batch", type=int, default=32)
    ap.add_argument("--eval", type=int, default=0, help="documents per level for the eval comparison (0: none)")
    ap.add_argument("--eval-batch", type=int, default=32)
    ap.add_argument("--gate-bias", type=float, default=-1.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if bool(args.model) == bool(args.random):
        print("error: give a run or model folder, or --random huginn|ouro, not both or neither", file=sys.stderr)
        return 2
    try:
        batches = [int(b) for b in args.batches.split(",")]
        threads = [int(t) for t in args.threads.split(",")]
        broken_down = {int(b) for b in args.breakdown.split(",")} if args.breakdown else set()
    except ValueError:
        print("error: --batches, --threads and --breakdown take comma-separated whole numbers, e.g. 1,8,32", file=sys.stderr)
        return 2
    if not broken_down <= set(batches):
        print(f"error: --breakdown {args.breakdown} names a batch size not in --batches {args.batches}", file=sys.stderr)
        return 2
    if args.eval and args.random:
        print("error: --eval needs an embedded-task run (recurlab eval --tasks embedded)", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory() as tmp:
        try:
            options(args, "depth", 1)
            opened = open_bench_model(args, Path(tmp))
        except (InferenceError, OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    engine, label = opened.engine, opened.label
    prompts, distinct = workload(opened.tokenizer, opened.cfg if opened.run is not None else None, args.prompts, args.seed)
    report = {"model": label, "device": args.device, "r": args.r, "exit": args.exit,
              "prompts": len(prompts), "distinct_prompts": distinct, "new_tokens": args.new_tokens,
              "stop": not args.no_stop, "rounds": args.rounds, "seed": args.seed,
              "load_average_before": load_average(), "runs": []}
    print(f"{label}: {len(prompts)} prompts ({distinct} distinct), r = {args.r}, exit {args.exit}", flush=True)
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        engine.generate(prompts[:4], options(args, "depth", 4))  # warm-up: allocator, kernels
        for batch in batches:
            row = compare_modes(engine, prompts, args, batch)
            row["threads"] = n_threads
            row["load_average"] = load_average()
            report["runs"].append(row)
            print_row(row, n_threads)
            if batch in broken_down:
                row["breakdown"] = bd = breakdown(engine, prompts, args, batch, row)
                parts = ", ".join(f"{k} {v:.3f}" for k, v in bd["stage_seconds"].items())
                print(f"  threads {n_threads} batch {batch:>3} depth stages (s, profiled): {parts}", flush=True)
                line = (f"  -> fixed r at the mean depth {bd['fixed_at_mean_decode_seconds']:.3f}s decode: depth reaches "
                        f"{bd['share_of_measured_ideal']:.0%} of that ideal; core + coda alone would reach "
                        f"{bd['most_share_of_ideal']:.0%} of r / mean")
                if bd["most_over_padded"] is not None:
                    line += f" and {bd['most_over_padded']:.2f}x today's batched exit"
                print(line, flush=True)
        if args.load:
            lt = load_test(engine, prompts, args, args.load_batch)
            lt["threads"], lt["load_average"] = n_threads, load_average()
            report.setdefault("load", []).append(lt)
            print(f"  threads {n_threads} load {args.load:g}/s batch {args.load_batch}: p50 {lt['padded']['p50_s']:.3f}s -> "
                  f"{lt['depth']['p50_s']:.3f}s, p95 {lt['padded']['p95_s']:.3f}s -> {lt['depth']['p95_s']:.3f}s "
                  f"({lt['p50_reduction']:.0%} / {lt['p95_reduction']:.0%} lower)", flush=True)
        if args.eval:
            from recurlab.evaluation.lm import open_source  # lm-eval: an optional dependency, for --eval only

            source = open_source(run=str(Path(args.model) if Path(args.model).exists() else Path(args.runs_dir) / args.model),
                                 model=None, checkpoint=None, device=args.device, dtype=None, runs_dir=args.runs_dir)
            run_path = source.run.path
            ev = eval_test(run_path, args, source)
            ev["threads"], ev["load_average"] = n_threads, load_average()
            report.setdefault("eval", []).append(ev)
            print(f"  threads {n_threads} eval: padded {ev['padded']['seconds']:.1f}s, depth {ev['depth']['seconds']:.1f}s "
                  f"({ev['speedup']:.2f}x), same results: {ev['same_results']}", flush=True)
    report["load_average_after"] = load_average()
    out = write_result(args.out, report, keep_earlier=True)  # results are never replaced
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
