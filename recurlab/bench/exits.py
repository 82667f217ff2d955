"""Adaptive exit on a trained task checkpoint: mean iterations vs exact match, per threshold.

    python -m recurlab.bench.exits RUN                      # r = 2*r_mean, kl at 0, 1e-4, 5e-4, 1e-3
    python -m recurlab.bench.exits RUN --r 16 --criterion kl --thresholds 0,5e-4 --examples 128

Greedy generation of the held-out answers of every difficulty through the inference engine,
once with fixed r (threshold 0) and once per threshold; prints a table (threshold, mean
iterations per generated token, exact match per difficulty and overall) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from recurlab.checkpoint import run_config
from recurlab.data import TaskData
from recurlab.engine import Engine, GenerateOptions, open_run
from recurlab.rundir import resolve_run


def evaluate_exit(engine: Engine, data: TaskData, r: int, exit_spec: str | None, examples: int, batch: int) -> dict:
    correct, iters, n_tok, levels = 0, 0, 0, {}
    total = 0
    for d in data.eval_levels:
        exs = data.heldout(d)[:examples]
        right = 0
        for b in range(0, len(exs), batch):
            chunk = exs[b : b + batch]
            opts = GenerateOptions(r=r, init_scale=0.0, exit=exit_spec, max_new_tokens=len(chunk[0].answer) + 1)
            res = engine.generate([ex.prompt for ex in chunk], opts)
            for ex, text, its in zip(chunk, res.texts, res.iterations):
                right += data.task.score(ex, text[: len(ex.answer)])
                # iterations of the answer tokens (the trailing <eos> is not part of the answer)
                iters += sum(its[: len(ex.answer)])
                n_tok += min(len(its), len(ex.answer))
        levels[f"acc@{d}"] = right / len(exs)
        correct += right
        total += len(exs)
    return {"mean_iterations": iters / max(n_tok, 1), "acc": correct / max(total, 1), **levels}


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("--r", type=int, default=0, help="maximum iterations (default 2*r_mean)")
    ap.add_argument("--criterion", default="kl")
    ap.add_argument("--thresholds", default="1e-4,5e-4,1e-3")
    ap.add_argument("--examples", type=int, default=128, help="held-out examples per difficulty")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    run = resolve_run(args.run, args.runs_dir)
    cfg = run_config(run)
    model, tok, _, ckpt = open_run(run, device=args.device)
    engine = Engine(model, tok, device=args.device)
    data = TaskData(cfg)
    r = args.r or 2 * cfg.train.r_mean
    rows = [{"threshold": 0.0, "criterion": "fixed r", **evaluate_exit(engine, data, r, None, args.examples, args.batch)}]
    for th in [float(x) for x in args.thresholds.split(",") if x]:
        spec = f"{args.criterion}:{th:g}"
        rows.append({"threshold": th, "criterion": spec, **evaluate_exit(engine, data, r, spec, args.examples, args.batch)})
    accs = [k for k in rows[0] if k.startswith("acc@")]
    print(f"run {run.name}, checkpoint step {ckpt.step}, max r = {r}, {args.examples} held-out examples per level")
    print(f"{'exit':<14}{'mean iters':>11}{'exact match':>13}" + "".join(f"{a:>9}" for a in accs))
    for row in rows:
        print(f"{row['criterion']:<14}{row['mean_iterations']:>11.2f}{100 * row['acc']:>12.1f}%"
              + "".join(f"{100 * row[a]:>8.1f}%" for a in accs))
    out = Path(args.out or "bench-results/exits.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"run": run.name, "step": ckpt.step, "r": r, "rows": rows}, indent=1))
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
