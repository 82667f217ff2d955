"""Sequential greedy decode speed on the reference configuration, one process, one code tree.

    python -m recurlab.bench.refdecode --folder /tmp/ref --write      # write the random checkpoint
    python -m recurlab.bench.refdecode --folder /tmp/ref --rs 4,16,32 # print one JSON line
    python -m recurlab.bench.refdecode --folder /tmp/ref --compile    # compiled decode steps

The reference configuration: a random checkpoint in the Huginn folder format (width 256, 4 heads,
2 + 4 + 2 layers, intermediate 512, vocabulary 512, fp32), opened with `open_model` on the CPU,
a 32-token prompt, 32 new greedy tokens from a zero latent start with no stop token, 2 threads.
Each r gets one untimed warm-up generation (which also compiles, with `--compile`), then
`--repeats` timed ones; the best is reported.

Measuring uses only APIs that every tree since the engine's one door has (open_model, Engine,
GenerateOptions; the checkpoint is written by this tree), so `python -m recurlab.bench.generate
--reference --baseline OTHER_CHECKOUT` can run it as a script against another checkout of the
code (PYTHONPATH=OTHER_CHECKOUT python .../refdecode.py) to compare two versions in one session.
"""

from __future__ import annotations

import argparse  # not recurlab.bench.results: this file also runs against older checkouts
import json
import sys
import time

REFERENCE = dict(n_embd=256, n_heads=4, n_layers_in_prelude=2, n_layers_in_recurrent_block=4, n_layers_in_coda=2,
                 intermediate_size=512, vocab_size=512, block_size=256, mean_recurrence=32)
TEXT = ("The capital of Westphalia is Muenster, a city with a long history. A recurrent depth model thinks "
        "longer by iterating one block over a latent state. Question: what is 12 + 34? Answer: 46.")


def prompt_of(tok, n_tokens: int) -> str:
    """The longest prefix of TEXT that encodes to at most n_tokens tokens (exactly n when possible)."""
    best = ""
    for end in range(1, len(TEXT) + 1):
        if len(tok.encode(TEXT[:end])) > n_tokens:
            break
        best = TEXT[:end]
    return best


def measure(folder: str, rs: list[int], threads: int, repeats: int, prompt_tokens: int, new_tokens: int,
            compile: bool = False) -> dict:
    import torch

    torch.set_num_threads(threads)
    # the engine imports torch; only the long-stable names, which every checkout has
    from recurlab.engine import Engine, GenerateOptions, open_model

    opened = open_model(folder, device="cpu")  # a folder opens in fp32 on the CPU
    model, tok = opened.model, opened.tokenizer
    engine = Engine(model, tok, device="cpu")
    prompt = prompt_of(tok, prompt_tokens)
    out = {"prompt_tokens": len(engine.encode(prompt)), "new_tokens": new_tokens, "threads": threads, "rs": {}}
    for r in rs:
        # `compile` only when asked: older trees' GenerateOptions have no such field
        extra = {"compile": True} if compile else {}
        opts = GenerateOptions(r=r, max_new_tokens=new_tokens, temperature=0.0, init_scale=0.0, stop_ids=[], **extra)
        engine.generate(prompt, opts)  # warm-up
        runs, cpu = [], []
        for _ in range(repeats):
            c0 = time.process_time()
            runs.append(engine.generate(prompt, opts))
            cpu.append(time.process_time() - c0)
        best = min(runs, key=lambda res: res.seconds)
        out["rs"][str(r)] = {
            "tokens_per_s": round(best.tokens_per_s, 2),
            "decode_tokens_per_s": round(best.n_tokens / best.decode_seconds, 2),
            "all_tokens_per_s": [round(res.tokens_per_s, 2) for res in runs],
            # process CPU seconds per generation: less sensitive to other processes than wall time
            # with one thread (with more, threads spinning at barriers count too)
            "cpu_seconds_best": round(min(cpu), 3),
            "token_ids": best.token_ids,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m recurlab.bench.refdecode", description=__doc__.splitlines()[0])
    p.add_argument("--folder", required=True, help="where the random reference checkpoint is (or goes, with --write)")
    p.add_argument("--write", action="store_true", help="write the random checkpoint and exit")
    p.add_argument("--rs", default="4,16,32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--prompt-tokens", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", action="store_true", help="compiled decode steps (this tree's GenerateOptions.compile)")
    args = p.parse_args(argv)
    if args.write:
        from recurlab.families.writers import write_random_huginn  # torch: only this step writes

        write_random_huginn(args.folder, **REFERENCE, seed=args.seed, dtype="float32")
        return 0
    t0 = time.perf_counter()
    res = measure(args.folder, [int(x) for x in args.rs.split(",")], args.threads, args.repeats,
                  args.prompt_tokens, args.new_tokens, args.compile)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
