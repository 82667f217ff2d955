"""Generation speed side by side: plain, adaptive exit, self-speculative, a shared KV budget and
compiled decode steps, at several r, plus the KV-cache memory; on CUDA also static-shape decode (CUDA graph,
torch.compile) against eager. For embedded-task runs, optionally the held-out tables: exit threshold
against mean iterations and exact match, and KV budget against answer loss, exact match and memory.

    python -m recurlab.bench.generate runs/add-1 --out bench-results/generate.json
    python -m recurlab.bench.generate --random --device cuda --rs 4,16,32
    python -m recurlab.bench.generate runs/add-1 --exit-table 200 --exit-r 32   # embedded-task runs only
    python -m recurlab.bench.generate --reference                                 # the reference configuration
    python -m recurlab.bench.generate --reference --baseline /path/to/main --rounds 5   # A/B against main
    python -m recurlab.bench.generate --reference --baseline /path/to/main --compile    # and compiled steps

Every mode decodes the same prompt greedily from a zero latent start with no stop token, so each
produces `--new-tokens` tokens; tokens/s counts those tokens over prefill plus decode time, after
one untimed warm-up call. The result is printed as JSON and written to `--out`.

`--reference` times plain sequential decoding on the reference configuration instead (a random
Huginn-format checkpoint of width 256, 4 heads, 2 + 4 + 2 layers, intermediate 512, vocabulary 512;
a 32-token prompt, 32 new greedy tokens, 2 threads; see recurlab.bench.refdecode), each code tree in
its own process. With `--baseline DIR` (another checkout, e.g. `git worktree add /tmp/main main`) the
two trees run in alternation, ABBA, for `--rounds` rounds, so that both see the same machine load;
the report gives each tree's best and median tokens/s per r, the ratio, whether the generated
tokens are identical, and the load average before and after. `--compile` adds this tree with
`GenerateOptions(compile=True)` (recurlab.engine.compiled) as a third contender; its one-time
compile happens in the untimed warm-up.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from recurlab.bench.results import bench_parser, load_average, write_result
from recurlab.config import ModelConfig, RunConfig
from recurlab.engine import Engine, GenerateOptions, KVCache, OpenedModel, open_model
from recurlab.engine.cached_pass import run_pass
from recurlab.engine.static_decode import StaticDecoder
from recurlab.errors import InferenceError, UserError
from recurlab.model import RecurrentLM
from recurlab.rundir import resolve_run
from recurlab.tasks import CharVocab, get_task

RANDOM_SHAPE = dict(n_embd=256, n_head=8, n_prelude=1, n_core=2, n_coda=1)


def load(args) -> OpenedModel:
    """The run's latest checkpoint, or a random model of RANDOM_SHAPE; its label says which."""
    if args.random:
        tok = CharVocab.default()
        torch.manual_seed(0)
        cfg = RunConfig(profile="random", model=ModelConfig(vocab_size=len(tok), **RANDOM_SHAPE))
        model = RecurrentLM(cfg.model).to(args.device).eval()
        label = "random " + ",".join(f"{k}={v}" for k, v in RANDOM_SHAPE.items())
        return OpenedModel(model, tok, cfg, args.device, label, Path("random"), kind="random")
    opened = open_model(resolve_run(args.run, args.runs_dir), device=args.device)
    opened.label = f"{args.run} step {opened.step}"
    return opened


def timed(engine, prompt, opts, repeats: int):
    engine.generate(prompt, opts)  # warm-up: allocator, kernels, lazy init
    best = None
    for _ in range(repeats):
        res = engine.generate(prompt, opts)
        if best is None or res.seconds < best.seconds:
            best = res
    return best


def speed_table(engine, args) -> list[dict]:
    rows = []
    for r in args.rs:
        draft = max(1, min(args.draft, r // 4))
        modes = {
            "plain": {},
            f"exit {args.exit}": {"exit": args.exit},
            f"speculative draft={draft},lookahead={args.lookahead}": {"speculative": f"draft={draft},lookahead={args.lookahead}"},
            f"kv budget {min(args.kv_budget, r)}": {"kv_budget": min(args.kv_budget, r)},
            "compiled steps": {"compile": True},  # compiles in `timed`'s untimed warm-up
        }
        plain_tps = None
        for name, extra in modes.items():
            opts = GenerateOptions(r=r, max_new_tokens=args.new_tokens, init_scale=0.0, stop_ids=(), **extra)
            res = timed(engine, args.prompt, opts, args.repeats)
            plain_tps = plain_tps or res.tokens_per_s
            rows.append({
                "r": r, "mode": name, "tokens_per_s": round(res.tokens_per_s, 2),
                "decode_tokens_per_s": round(res.n_tokens / res.decode_seconds, 2) if res.decode_seconds else None,
                "speedup_vs_plain": round(res.tokens_per_s / plain_tps, 3),
                "mean_iterations": round(res.mean_iterations, 3), "cache_bytes": res.cache_bytes,
                "acceptance_rate": None if res.acceptance_rate is None else round(res.acceptance_rate, 3),
            })
            print(f"r={r:<3} {name:<40} {res.tokens_per_s:9.1f} tok/s  x{rows[-1]['speedup_vs_plain']:<6} "
                  f"iters {res.mean_iterations:6.2f}  cache {res.cache_bytes / 2**20:8.2f} MiB"
                  + (f"  accept {res.acceptance_rate:.0%}" if res.acceptance_rate is not None else ""), flush=True)
    return rows


def static_table(engine, args) -> list[dict]:
    """CUDA only: static-shape decode as a CUDA graph and with torch.compile, against eager."""

    model, prompt_ids = engine.model, engine.encode(args.prompt)
    max_len = len(prompt_ids) + args.new_tokens
    rows = []
    for r in args.rs:
        base, eager_ids = None, None
        for mode in ("eager", "graph", "compile"):
            try:
                dec = StaticDecoder(model, max_len, r, mode=mode)
                ids = dec.generate(prompt_ids, args.new_tokens)  # warm-up and capture / compile
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                again = dec.generate(prompt_ids, args.new_tokens)
                torch.cuda.synchronize()
                tps = args.new_tokens / (time.perf_counter() - t0)
            except Exception as exc:  # a compiler failure is a result to report, not a crash
                rows.append({"r": r, "mode": f"static {mode}", "error": f"{type(exc).__name__}: {exc}".splitlines()[0]})
                print(f"r={r:<3} static {mode:<10} failed: {rows[-1]['error']}", flush=True)
                continue
            base, eager_ids = base or tps, eager_ids or ids
            rows.append({"r": r, "mode": f"static {mode}", "tokens_per_s": round(tps, 2),
                         "speedup_vs_eager": round(tps / base, 3), "same_tokens_as_eager": ids == again == eager_ids})
            print(f"r={r:<3} static {mode:<10} {tps:9.1f} tok/s  x{tps / base:.2f} vs eager", flush=True)
    return rows


def exit_table(engine, cfg, args) -> list[dict]:
    """Exact-match accuracy and mean iterations per threshold on held-out task examples."""
    task = get_task(cfg.data.task)
    examples = [ex for d in cfg.data.difficulties for ex in task.heldout(d, args.exit_table)]
    rows = []
    variants = [(None, "latest")] + [(f"{kind}:{t}", lookup) for kind in args.exit_kinds for t in args.thresholds
                                     for lookup in args.lookups]
    for spec, lookup in variants:
        correct, iters = 0, []
        for i in range(0, len(examples), 64):
            chunk = examples[i:i + 64]
            opts = GenerateOptions(r=args.exit_r, init_scale=0.0, exit=spec, cache_lookup=lookup,
                                   max_new_tokens=max(len(ex.answer) for ex in chunk) + 1)
            res = engine.generate([ex.prompt for ex in chunk], opts)
            correct += sum(task.score(ex, text) for ex, text in zip(chunk, res.texts))
            iters += [it for row in res.iterations for it in row]
        rows.append({"exit": spec or f"fixed r={args.exit_r}", "cache_lookup": lookup,
                     "mean_iterations": round(sum(iters) / len(iters), 3),
                     "accuracy": round(correct / len(examples), 4), "examples": len(examples),
                     "distinct_per_level": {d: len(task.heldout(d, args.exit_table)) for d in cfg.data.difficulties}})
        print(f"{rows[-1]['exit']:<14} lookup {lookup:<8} mean iterations {rows[-1]['mean_iterations']:6.2f}  "
              f"exact match {rows[-1]['accuracy']:.2%} ({len(examples)} distinct prompts)", flush=True)
    return rows


def kv_budget_table(engine, cfg, args) -> list[dict]:
    """Held-out quality per KV budget: the answer's loss under teacher forcing (one cached pass per
    column, as in decoding, so that later tokens read the shared slots) and greedy exact match."""

    task, tok, model = get_task(cfg.data.task), engine.tokenizer, engine.model
    r = args.exit_r
    rows = []
    for budget in [None] + [b for b in args.budgets if b < r]:
        nll, n_tok, correct, n_ex, mem = 0.0, 0, 0, 0, 0
        for d in cfg.data.difficulties:
            examples = task.heldout(d, args.exit_table)
            seqs = [engine.encode(ex.prompt) + tok.encode(ex.answer) + [tok.eos_id] for ex in examples]
            n_prompt = len(engine.encode(examples[0].prompt))  # equal within a difficulty
            ids = torch.tensor(seqs, device=engine.device)
            cache = KVCache(model.cfg, len(seqs), ids.shape[1], r, budget, engine.device, engine.dtype)
            run_pass(model, cache, ids[:, :n_prompt - 1], r, init_scale=0.0)
            logits = [run_pass(model, cache, ids[:, t:t + 1], r, init_scale=0.0).logits
                      for t in range(n_prompt - 1, ids.shape[1] - 1)]
            target = ids[:, n_prompt:]
            nll += float(F.cross_entropy(torch.cat(logits, 1).float().flatten(0, 1), target.flatten(), reduction="sum"))
            n_tok += target.numel()
            res = engine.generate([ex.prompt for ex in examples],
                                  GenerateOptions(r=r, init_scale=0.0, kv_budget=budget, max_new_tokens=len(examples[0].answer) + 1))
            correct += sum(task.score(ex, text) for ex, text in zip(examples, res.texts))
            n_ex += len(examples)
            mem = max(mem, cache.memory_bytes() // len(seqs) // ids.shape[1])
        rows.append({"kv_budget": budget or r, "r": r, "answer_loss": round(nll / n_tok, 5),
                     "accuracy": round(correct / n_ex, 4), "cache_bytes_per_token": mem})
        print(f"kv budget {budget or r:>3} (r={r})  answer loss {nll / n_tok:.4f}  exact match {correct / n_ex:.2%}  "
              f"cache {mem} B/token", flush=True)
    return rows


def reference(args) -> dict:
    """Decode speed of this tree (and `--baseline`) on the reference configuration, ABBA rounds."""
    import os
    import statistics
    import subprocess
    import tempfile

    here = Path(__file__).resolve().parents[2]
    script = here / "recurlab" / "bench" / "refdecode.py"
    # each contender: a code tree and extra refdecode flags ("compiled": this tree with --compile)
    trees = {"this": (here, ())}
    if args.baseline:
        base = Path(args.baseline).resolve()
        if not (base / "recurlab" / "model.py").exists():
            print(f"error: --baseline {args.baseline} is not a recurlab checkout (no recurlab/model.py); "
                  "pass a clone or worktree, e.g. `git worktree add /tmp/issue-start cf9d2fd`", file=sys.stderr)
            raise SystemExit(2)
        trees = {"baseline": (base, ()), "this": (here, ())}
    if args.compile:
        trees["compiled"] = (here, ("--compile",))

    def child(tree: Path, *extra: str) -> str:
        # runpy from -c, so that sys.path[0] is the temporary cwd rather than recurlab/bench
        code = f"import runpy, sys; sys.argv = ['refdecode'] + sys.argv[1:]; runpy.run_path({str(script)!r}, run_name='__main__')"
        env = dict(os.environ, PYTHONPATH=str(tree))
        out = subprocess.run([sys.executable, "-c", code, *extra], env=env, cwd=tmp, capture_output=True, text=True)
        if out.returncode != 0:
            tail = out.stderr.strip().splitlines()[-1:] or ["no output"]
            print(f"error: the reference decode failed under {tree}: {tail[0]}", file=sys.stderr)
            raise SystemExit(2)
        return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""

    with tempfile.TemporaryDirectory(prefix="recurlab-refdecode-") as tmp:
        folder = str(Path(tmp) / "ref")
        child(here, "--folder", folder, "--write")
        load_before = load_average()
        runs: dict[str, list[dict]] = {name: [] for name in trees}
        for k in range(args.rounds):
            order = list(trees) if k % 2 == 0 else list(trees)[::-1]
            for name in order:
                tree, extra = trees[name]
                res = json.loads(child(tree, "--folder", folder, "--rs", ",".join(map(str, args.rs)),
                                       "--threads", str(args.threads), "--repeats", str(args.repeats), *extra))
                runs[name].append(res)
                print(f"round {k + 1} {name:<8} " + "  ".join(f"r={r} {v['tokens_per_s']:7.2f} tok/s"
                                                             for r, v in res["rs"].items()), flush=True)
        load_after = load_average()
    table = []
    for r in map(str, args.rs):
        row = {"r": int(r)}
        for name in trees:
            rates = [res["rs"][r]["tokens_per_s"] for res in runs[name]]
            cpu = [res["rs"][r]["cpu_seconds_best"] for res in runs[name] if "cpu_seconds_best" in res["rs"][r]]
            row[name] = {"best_tokens_per_s": max(rates), "median_tokens_per_s": round(statistics.median(rates), 2),
                         "all": rates, "cpu_seconds_best": min(cpu) if cpu else None}
        ids = {json.dumps(res["rs"][r]["token_ids"]) for name in trees for res in runs[name]}
        row["same_tokens"] = len(ids) == 1
        line = f"r={r:<3} " + "  ".join(f"{n} best {row[n]['best_tokens_per_s']:7.2f} median {row[n]['median_tokens_per_s']:7.2f}"
                                        for n in trees)
        if args.baseline:
            base_row = row["baseline"]
            for name in trees:
                if name == "baseline":
                    continue
                key = "" if name == "this" else f"{name}_"  # "speedup_best" is this tree's, eager
                row[f"{key}speedup_best"] = round(row[name]["best_tokens_per_s"] / base_row["best_tokens_per_s"], 3)
                row[f"{key}speedup_median"] = round(row[name]["median_tokens_per_s"] / base_row["median_tokens_per_s"], 3)
                if row[name]["cpu_seconds_best"] and base_row["cpu_seconds_best"]:
                    row[f"{key}speedup_cpu_time"] = round(base_row["cpu_seconds_best"] / row[name]["cpu_seconds_best"], 3)
                line += (f"\n      {name} vs baseline: x{row[f'{key}speedup_best']} (best) x{row[f'{key}speedup_median']} "
                         f"(median) x{row.get(f'{key}speedup_cpu_time')} (cpu time)")
        table.append(row)
        print(line + f"\n      same tokens: {row['same_tokens']}", flush=True)
    return {"benchmark": "reference sequential decode", "config": "width 256, 4 heads, 2+4+2 layers, intermediate 512, "
            "vocab 512, random Huginn-format fp32 weights, 32-token prompt, 32 new greedy tokens, zero start",
            "threads": args.threads, "rounds": args.rounds, "repeats_per_round": args.repeats,
            "trees": {n: " ".join([str(t), *extra]) for n, (t, extra) in trees.items()}, "cpu_count": os.cpu_count(),
            "load_average_before": load_before, "load_average_after": load_after,
            "prompt_tokens": runs["this"][0]["prompt_tokens"], "table": table}


def main(argv: list[str] | None = None) -> int:
    p = bench_parser("generate", __doc__, out="")  # default: generate.json, or generate-reference.json
    p.add_argument("run", nargs="?", help="run name or directory (or use --random)")
    p.add_argument("--random", action="store_true", help=f"a random-init model of shape {RANDOM_SHAPE}")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--rs", default="4,16,32")
    p.add_argument("--prompt", default="12345678+87654321=")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--exit", default="kl:5e-4")
    p.add_argument("--draft", type=int, default=4)
    p.add_argument("--lookahead", type=int, default=8)
    p.add_argument("--kv-budget", type=int, default=4)
    p.add_argument("--exit-table", type=int, default=0, help="held-out examples per difficulty (0: skip)")
    p.add_argument("--exit-r", type=int, default=32)
    p.add_argument("--thresholds", default="5e-4,1e-3,1e-2")
    p.add_argument("--exit-kinds", default="kl", help="exit criteria of the exit table, e.g. kl,kl-rev")
    p.add_argument("--lookups", default="latest", help="cache lookups of the exit table: latest, existing or both")
    p.add_argument("--budgets", default="1,2,4,8")
    p.add_argument("--reference", action="store_true", help="plain decode on the reference configuration (no run)")
    p.add_argument("--baseline", default="", help="with --reference: another recurlab checkout to time in alternation")
    p.add_argument("--rounds", type=int, default=3, help="with --reference: rounds (each tree once per round)")
    p.add_argument("--threads", type=int, default=2, help="with --reference: torch threads")
    p.add_argument("--compile", action="store_true", help="with --reference: also time this tree with compiled decode steps")
    args = p.parse_args(argv)
    args.rs = [int(x) for x in args.rs.split(",")]
    if args.reference:
        if args.run or args.random:
            p.error("--reference takes no RUN and no --random")
        result = reference(args)
        out = write_result(args.out or "bench-results/generate-reference.json", result)
        print(f"written to {out}", file=sys.stderr)
        return 0
    args.out = args.out or "bench-results/generate.json"
    if bool(args.run) == args.random:
        p.error("give a RUN or --random (not both)")
    args.thresholds = [float(x) for x in args.thresholds.split(",")]
    args.exit_kinds = [x for x in args.exit_kinds.split(",") if x]
    args.lookups = [x for x in args.lookups.split(",") if x]
    args.budgets = [int(x) for x in args.budgets.split(",")]

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available here; run with --device cpu", file=sys.stderr)
        return 0
    try:
        opened = load(args)
        model, source, cfg = opened.model, opened.label, opened.cfg if opened.run is not None else None
        engine = Engine(model, opened.tokenizer, device=args.device)
        print(f"model: {source} ({model.num_params() / 1e6:.2f}M parameters) on {args.device}", flush=True)
        result = {"model": source, "device": args.device, "prompt": args.prompt, "new_tokens": args.new_tokens,
                  "speed": speed_table(engine, args)}
        if args.device.startswith("cuda"):
            result["gpu"] = torch.cuda.get_device_name()
            result["static"] = static_table(engine, args)
        if args.exit_table:
            if cfg is None or cfg.data.source != "task":
                raise InferenceError("--exit-table needs an embedded-task run (data.source=task)")
            result["exit_table"] = exit_table(engine, cfg, args)
            result["kv_budget_table"] = kv_budget_table(engine, cfg, args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = write_result(args.out, result)
    print(json.dumps(result))
    print(f"written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
