"""Is it length or compute? Level-k permutation problems made longer with identity permutations.

    python -m recurlab.bench.length_probe runs/cpu-demo --level 4 --pads 0,4 --rs 8,32
    python -m recurlab.bench.length_probe runs/cpu-demo --out bench-results/length_probe.json

Takes the run's own held-out problems of `--level` and prepends `pad` identity permutations to
each: the answer and the number of non-trivial steps stay the same, the prompt becomes as long as
level + pad. Exact match per (pad, r) is printed and written as JSON to --out. A model whose
accuracy drops with pad fails on longer inputs, whatever the depth.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def padded(task, examples: list, pad: int) -> list:
    """Each example with `pad` identity permutations prepended: same answer, longer prompt."""
    from recurlab.tasks import Example

    identity = "".join(map(str, range(task.n)))
    return [Example(".".join([identity] * pad + [ex.prompt.rstrip("=")]) + "=", ex.answer, ex.difficulty + pad)
            for ex in examples]


def probe(run_path: str, level: int, pads: list[int], rs: list[int], examples: int = 200) -> list[dict]:
    import torch

    from recurlab.checkpoint import load_model
    from recurlab.config import run_config
    from recurlab.data import IGNORE, encode_examples
    from recurlab.rundir import RunDir
    from recurlab.tasks import CharVocab, get_task

    run = RunDir(Path(run_path))
    cfg = run_config(run)
    task = get_task(cfg.data.task)
    model, ckpt = load_model(run, None, "cpu")
    model.eval()
    base = task.heldout(level, examples, cfg.train.seed)
    rows = []
    for pad in pads:
        exs = padded(task, base, pad)
        idx, tgt = encode_examples(exs, CharVocab.default())
        for r in rs:
            with torch.no_grad():  # the sweep's fixed latent start
                logits = model(idx, n_no_grad=r, n_grad=0, generator=torch.Generator().manual_seed(1234)).logits
            right = ((logits.argmax(-1) == tgt) | (tgt == IGNORE)).all(dim=1)
            rows.append({"step": ckpt.step, "level": level, "pad": pad, "r": r, "examples": len(exs),
                         "acc": float(right.float().mean())})
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--level", type=int, default=4)
    ap.add_argument("--pads", default="0,4")
    ap.add_argument("--rs", default="8,32")
    ap.add_argument("--out", default="bench-results/length_probe.json")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    rows = probe(args.run, args.level, [int(x) for x in args.pads.split(",")], [int(x) for x in args.rs.split(",")])
    for row in rows:
        print(f"level {row['level']} + {row['pad']} identities (length of level {row['level'] + row['pad']}), "
              f"r = {row['r']}: {100 * row['acc']:.1f}% of {row['examples']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
