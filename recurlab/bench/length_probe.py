"""Is it length or compute? Level-k permutation problems made longer with identity permutations
(the probe itself is recurlab.length_probe).

    python -m recurlab.bench.length_probe runs/cpu-demo --level 4 --pads 0,4 --rs 8,32
    python -m recurlab.bench.length_probe runs/cpu-demo --out bench-results/length_probe.json

Takes the run's own held-out problems of `--level` and prepends `pad` identity permutations to
each: the answer and the number of non-trivial steps stay the same, the prompt becomes as long as
level + pad. Exact match per (pad, r) is printed and written as JSON to --out. A model whose
accuracy drops with pad fails on longer inputs, whatever the depth.
"""

from __future__ import annotations

import torch

from recurlab.bench.results import bench_parser, write_result
from recurlab.length_probe import probe


def main(argv: list[str] | None = None) -> None:
    ap = bench_parser("length_probe", __doc__, out="bench-results/length_probe.json")
    ap.add_argument("run")
    ap.add_argument("--level", type=int, default=4)
    ap.add_argument("--pads", default="0,4")
    ap.add_argument("--rs", default="8,32")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    rows = probe(args.run, args.level, [int(x) for x in args.pads.split(",")], [int(x) for x in args.rs.split(",")])
    for row in rows:
        print(f"level {row['level']} + {row['pad']} identities (length of level {row['level'] + row['pad']}), "
              f"r = {row['r']}: {100 * row['acc']:.1f}% of {row['examples']}")
    out = write_result(args.out, {"run": args.run, "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
