"""Evaluation throughput: loglikelihood requests per second through the lm-eval backend, batched
against batch size 1, at several r, with and without an exit rule.

    python -m recurlab.bench.evaluate runs/cpu-demo --rs 4,32 --batch-sizes 1,8,32 --requests 128
    python -m recurlab.bench.evaluate --random --device cuda --rs 4,32 --batch-sizes 1,8,32,64

The requests are (prompt, answer) pairs of the run's embedded task (held-out split, every level),
or for --random (a 256-wide random model) synthetic prompts of 20 to 40 characters with 4-character
answers, like a multiple-choice task's choices. Each setting scores the same requests after one
untimed warm-up batch; the best of --repeats timings counts. Printed as a table and written as
JSON to --out (default bench-results/evaluate.json).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import torch

from recurlab.bench.results import bench_parser, write_result
from recurlab.config import ModelConfig, RunConfig
from recurlab.data import TaskData
from recurlab.engine import OpenedModel
from recurlab.model import RecurrentLM
from recurlab.tasks import CharVocab

RANDOM_SHAPE = dict(n_embd=256, n_head=8, n_prelude=1, n_core=2, n_coda=1, block_size=128)


def requests_for(args, source) -> list[tuple[str, str]]:
    cfg = source.cfg
    if source.run is not None and cfg.data.source == "task":
        data = TaskData(cfg)
        pairs = [(ex.prompt, ex.answer) for d in data.eval_levels for ex in data.heldout(d)]
        random.Random(0).shuffle(pairs)
        return pairs[:args.requests]
    rng = random.Random(0)
    alphabet = "0123456789+=.abcdefghij"
    return [("".join(rng.choice(alphabet) for _ in range(rng.randint(20, 40))),
             "".join(rng.choice(alphabet) for _ in range(4))) for _ in range(args.requests)]


def open_bench_source(args):
    from recurlab.evaluation.lm import open_source  # lm-eval: loaded only when this runs

    if not args.random:
        return open_source(run=args.run, device=args.device, runs_dir=args.runs_dir)

    tok = CharVocab.default()
    torch.manual_seed(0)
    cfg = RunConfig(profile="random", model=ModelConfig(vocab_size=len(tok), **RANDOM_SHAPE))
    model = RecurrentLM(cfg.model).to(args.device).eval()
    label = "random " + ",".join(f"{k}={v}" for k, v in RANDOM_SHAPE.items())
    return OpenedModel(model, tok, cfg, args.device, label, Path("random"), kind="random")


def measure(source, pairs, r: int, batch_size: int, exit_rule, repeats: int) -> dict:
    from lm_eval.api.instance import Instance

    from recurlab.evaluation.lm import RecurlabLM  # lm-eval and yaml: loaded only when this runs

    lm = RecurlabLM.from_source(source, r=r, batch_size=batch_size, exit=exit_rule, init_scale=0)
    reqs = [Instance("loglikelihood", {}, (c, " " + a if not a.startswith(" ") else a), i, ("bench", i, 1))
            for i, (c, a) in enumerate(pairs)]
    lm.loglikelihood(reqs[:batch_size])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        lm.reset_records()
        t0 = time.perf_counter()
        lm.loglikelihood(reqs)
        if source.model.parameters().__next__().device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    its = lm.records_for(["bench"])
    return {"r": r, "batch_size": batch_size, "exit": exit_rule or "off", "requests": len(reqs), "seconds": best,
            "requests_per_s": len(reqs) / best, "mean_iterations": sum(its) / len(its) if its else float(r)}


def main(argv=None) -> None:
    p = bench_parser("evaluate", __doc__, out="bench-results/evaluate.json")
    p.add_argument("run", nargs="?", help="a run directory or name (omit with --random)")
    p.add_argument("--random", action="store_true", help="a random 256-wide model instead of a run")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--rs", default="4,32")
    p.add_argument("--batch-sizes", default="1,8,32")
    p.add_argument("--requests", type=int, default=128)
    p.add_argument("--exit", default="kl:5e-4", help="also measure with this exit rule ('' to skip)")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    if bool(args.run) == args.random:
        p.error("give a RUN or --random")

    source = open_bench_source(args)
    pairs = requests_for(args, source)
    rows = []
    print(f"model: {source.label}; device {args.device}; torch threads {torch.get_num_threads()}; {len(pairs)} requests")
    print(f"{'r':>3} {'exit':>8} {'batch':>5} {'req/s':>9} {'speedup':>7} {'it/token':>8}")
    for r in [int(x) for x in args.rs.split(",")]:
        for exit_rule in [None] + ([args.exit] if args.exit else []):
            base = None
            for bs in [int(x) for x in args.batch_sizes.split(",")]:
                row = measure(source, pairs, r, bs, exit_rule, args.repeats)
                base = base or row["requests_per_s"]
                row["speedup_vs_first"] = row["requests_per_s"] / base
                rows.append(row)
                print(f"{r:>3} {row['exit']:>8} {bs:>5} {row['requests_per_s']:>9.1f} {row['speedup_vs_first']:>6.2f}x "
                      f"{row['mean_iterations']:>8.2f}", flush=True)
    out = write_result(args.out, {"model": source.label, "device": args.device, "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
