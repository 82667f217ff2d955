"""Ouro's learned exit gate as an exit criterion: steps per token, compute saved and quality cost.

    python -m recurlab.bench.gate --random --out bench-results/gate.json        # random Ouro-format model
    python -m recurlab.bench.gate --model models/Ouro-1.4B --device cuda --thresholds 0.5,0.9

For every threshold it reports two things:
* generation through the engine with `--exit gate:T` (the remaining steps are really skipped):
  mean steps per generated token, the share of the loop's layer passes saved against running all
  steps, decode tokens/s, and how many generated tokens equal the all-steps greedy output;
* quality on the same text read without a cache (teacher forcing): at every position, the
  distribution at the gate's exit step against the all-steps one: mean KL(all || exit), how often
  the argmax agrees, and the mean exit step.
`--random` writes a random Ouro-format folder (recurlab.families.writers) into a temporary
directory; its gate bias is shifted by `--gate-bias` so that exits spread over the steps. Greedy,
one prompt at a time, batch 1. The result is printed as JSON and written to `--out`.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from recurlab.bench.results import bench_parser, write_result
from recurlab.engine import Engine, GenerateOptions, open_model
from recurlab.engine.exits import exit_pdf, kl_div, log_softmax
from recurlab.families.writers import write_random_ouro

PROMPTS = ["The capital of Westphalia is", "12 + 34 = 46. 100 - 1 =", "def add(a, b):", "Question: what is the sum of 3"]


def teacher_forced(model, tok, text: str, r: int, threshold: float) -> dict:
    ids = torch.tensor([tok.encode(text)])
    with torch.inference_mode():
        rope = model.rope(torch.arange(ids.shape[1]))
        e = model.embed(ids, rope)
        s = model.init_state(e)
        states = []
        for i in range(r):
            s = model.core_step(s, e, rope, None, i)
            states.append(s[0])
        states = torch.stack(states)  # (r, T, d)
        pdf = exit_pdf(model.exit_lambda(states))  # (r, T)
        reached = pdf.cumsum(0) >= threshold
        step = torch.where(reached.any(0), reached.float().argmax(0), torch.full_like(reached[0], r - 1, dtype=torch.long))
        chosen = states[step, torch.arange(states.shape[1])]
        logp_exit = log_softmax(model.decode(chosen[None], rope)[0])
        logp_all = log_softmax(model.decode(states[-1][None], rope)[0])
    return {"positions": int(ids.shape[1]), "kl_sum": float(kl_div(logp_all, logp_exit).sum()),
            "agree": int((logp_exit.argmax(-1) == logp_all.argmax(-1)).sum()), "steps_sum": int((step + 1).sum())}


def main(argv=None) -> int:
    ap = bench_parser("gate", __doc__, out="bench-results/gate.json")
    ap.add_argument("--model", help="an Ouro-format folder")
    ap.add_argument("--random", action="store_true", help="write and use a random Ouro-format model")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--gate-bias", type=float, default=-1.0)
    ap.add_argument("--thresholds", default="0.5,0.7,0.9")
    ap.add_argument("--r", type=int, default=0, help="steps (default: the model's total_ut_steps)")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if bool(args.model) == bool(args.random):
        print("error: give either --model FOLDER or --random", file=sys.stderr)
        return 2

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.model
        if args.random:
            folder = write_random_ouro(Path(tmp) / "ouro", hidden=args.hidden, layers=args.layers, heads=8, kv_heads=4,
                                       mlp=args.hidden * 3, vocab=512, steps=4, gate_bias=args.gate_bias, seed=0)
        opened = open_model(folder, device=args.device)
        model, tok, cfg = opened.model, opened.tokenizer, opened.cfg
    if not model.cfg.exit_gate:
        print(f"error: {args.model} has no learned exit gate; the gate exit needs an Ouro-format model", file=sys.stderr)
        return 2
    r = args.r or cfg.train.r_mean
    engine = Engine(model, tok, device=args.device)
    thresholds = [float(t) for t in args.thresholds.split(",")]

    def generate(exit_spec):
        opts = GenerateOptions(r=r, max_new_tokens=args.new_tokens, temperature=0.0, exit=exit_spec, stop_ids=[])
        engine.generate(PROMPTS[0], opts)  # warm-up
        return [engine.generate(p, opts) for p in PROMPTS]

    full = generate(None)
    rows = []
    for thr in thresholds:
        res = generate(f"gate:{thr:g}")
        steps = [i for g in res for i in g.iterations[0]]
        same = sum(a == b for g, f in zip(res, full) for a, b in zip(g.token_ids, f.token_ids))
        tf = [teacher_forced(model, tok, p + f.text, r, thr) for p, f in zip(PROMPTS, full)]
        n = sum(t["positions"] for t in tf)
        rows.append({
            "threshold": thr,
            "generate_mean_steps": sum(steps) / len(steps),
            "generate_compute_saved": 1 - sum(steps) / (len(steps) * r),
            "generate_tokens_per_s": sum(g.n_tokens for g in res) / sum(g.seconds for g in res),
            "generate_tokens_equal_to_all_steps": same / sum(f.n_tokens for f in full),
            "teacher_forced_mean_exit_step": sum(t["steps_sum"] for t in tf) / n,
            "teacher_forced_mean_kl_all_vs_exit": sum(t["kl_sum"] for t in tf) / n,
            "teacher_forced_argmax_agreement": sum(t["agree"] for t in tf) / n,
        })
    result = {
        "model": "random Ouro-format" if args.random else str(args.model),
        "shape": {"hidden": model.cfg.n_embd, "layers": model.cfg.n_core, "heads": model.cfg.n_head,
                  "kv_heads": model.cfg.kv_heads, "steps": r},
        "gate_bias_shift": args.gate_bias if args.random else None,
        "device": args.device, "threads": args.threads, "prompts": len(PROMPTS), "new_tokens": args.new_tokens,
        "all_steps_tokens_per_s": sum(f.n_tokens for f in full) / sum(f.seconds for f in full),
        "rows": rows, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_result(args.out, result, indent=2)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
