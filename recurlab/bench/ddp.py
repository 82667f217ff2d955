"""What the data-parallel wrapper costs: training tokens/s and MFU with no wrapper, and under
torchrun with one process (DistributedDataParallel; with --fsdp also fully_shard), same steps.

    python -m recurlab.bench.ddp --profile h100 --steps 10 --out bench-results/ddp.json
    python -m recurlab.bench.ddp --fsdp train.micro_batch=8       # key=value overrides, as for train
    python -m recurlab.bench.ddp                                  # no CUDA: the tiny profile on CPU

Each measurement runs in a fresh process (the wrapped ones under `torch.distributed.run
--nproc_per_node 1`) through the real `Trainer.train_step`: `--warmup` untimed steps (compilation,
allocator, NCCL set-up), then `--steps` timed ones. Batches are random tokens of the profile's
shape and vocabulary, so no dataset or network is needed; steps are numbered alike in every mode,
so every mode samples the same recurrence depths. MFU uses recurlab.flops (matmul FLOPs, dense
bf16 peak of the device). Without CUDA it says so and runs the tiny profile: the numbers then only
show that the path works. Prints a table and writes JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from recurlab.bench.results import bench_parser, write_result
from recurlab.config import ConfigError, from_dict, load_profile, load_yaml, to_yaml, validate
from recurlab.distributed import Dist
from recurlab.flops import mfu, train_flops_per_token
from recurlab.rundir import RunDir
from recurlab.train import Trainer

MODES = {"plain": "no DDP", "ddp": "DDP", "fsdp": "FSDP"}


class RandomTokens:
    """Uniform random token sequences, deterministic in (seed, step, offset) like the real data."""

    def __init__(self, vocab: int, seq_len: int, seed: int):
        self.vocab, self.seq_len, self.seed = vocab, seq_len, seed

    def train_batch(self, step: int, n: int, offset: int = 0):
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step * 65_537 + offset)
        x = torch.randint(self.vocab, (n, self.seq_len + 1), generator=gen)
        return x[:, :-1].contiguous(), x[:, 1:].contiguous()


def measure(args) -> dict:
    """One mode in this process (a torchrun rank for the wrapped modes)."""

    cfg = validate(from_dict(load_yaml(Path(args.config)), source=args.config))
    cfg.model.vocab_size = args.vocab  # the profile's vocabulary, not the task's that validate() set
    cfg.hardware.fsdp = args.child == "fsdp"
    dist = Dist.from_env(cfg, cfg.hardware.device)
    with tempfile.TemporaryDirectory() as tmp:
        run = RunDir.create(tmp, f"bench-{args.child}", Path(args.config).read_text(), device=cfg.hardware.device)
        trainer = Trainer(run, cfg, cfg.hardware.device, dist)
        trainer.data = RandomTokens(args.vocab, args.seq_len, cfg.train.seed)
        trainer.model.train()
        cuda = trainer.device.type == "cuda"
        for step in range(1, args.warmup + 1):
            trainer.train_step(step)
        if cuda:
            torch.cuda.synchronize(trainer.device)
            torch.cuda.reset_peak_memory_stats(trainer.device)
        tokens, flops, t0 = 0, 0.0, time.perf_counter()
        for step in range(args.warmup + 1, args.warmup + args.steps + 1):
            m = trainer.train_step(step)
            tokens += m["tokens"]
            flops += train_flops_per_token(cfg.model, m["r_no_grad"], m["r_grad"], m["seq_len"]) * m["tokens"]
        if cuda:
            torch.cuda.synchronize(trainer.device)
        seconds = time.perf_counter() - t0
        result = {
            "mode": args.child, "processes": dist.world, "wrapped": type(trainer.model).__name__,
            "device": trainer.device_name, "steps": args.steps, "tokens": tokens, "seconds": seconds,
            "tokens_per_s": tokens / seconds, "step_s": seconds / args.steps,
            "mfu": mfu(flops / seconds / dist.world, trainer.device_name),
            "peak_memory_gb": torch.cuda.max_memory_allocated(trainer.device) / 2**30 if cuda else None,
        }
    if dist.is_main:
        Path(args.result).write_text(json.dumps(result))
    dist.close()
    return result


def bench_config(profile: str, overrides: list[str], cuda: bool):
    """The profile with task data swapped in (batches are replaced anyway), plus the vocabulary and
    sequence length the profile's own data would have."""

    probe = load_profile(profile, overrides)
    vocab = probe.model.vocab_size
    seq_len = probe.data.seq_len if probe.data.source != "task" else probe.model.block_size
    cfg = load_profile(profile, ["data.source=task", *overrides] + ([] if cuda else ["hardware.device=cpu"]))
    return cfg, vocab, seq_len


def run_modes(args, cfg, vocab: int, seq_len: int) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "run.yaml"
        config.write_text(to_yaml(cfg))
        env = dict(os.environ)
        if cfg.hardware.device == "cpu":
            env.setdefault("OMP_NUM_THREADS", "1")  # both modes alike; torchrun would set it for one only
        for mode in ["plain", "ddp"] + (["fsdp"] if args.fsdp else []):
            result = Path(tmp) / f"{mode}.json"
            child = ["-m", "recurlab.bench.ddp", "--child", mode, "--config", str(config), "--vocab", str(vocab),
                     "--seq-len", str(seq_len), "--steps", str(args.steps), "--warmup", str(args.warmup),
                     "--result", str(result)]
            launcher = [] if mode == "plain" else ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
            print(f"measuring {MODES[mode]} ...", file=sys.stderr, flush=True)
            proc = subprocess.run([sys.executable, *launcher, *child], capture_output=True, text=True, env=env)
            if proc.returncode != 0 or not result.exists():
                tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
                raise SystemExit(f"the {MODES[mode]} measurement failed (exit {proc.returncode}):\n{tail}")
            results.append(json.loads(result.read_text()))
    return results


def table(results: list[dict]) -> str:
    def pct(x):
        return f"{100 * x:.1f}%" if x is not None else "-"

    lines = [f"{'mode':<8} {'procs':>5} {'wrapper':<22} {'tokens/s':>12} {'MFU':>7} {'step s':>8} {'peak GB':>8}"]
    for r in results:
        mem = f"{r['peak_memory_gb']:.1f}" if r["peak_memory_gb"] is not None else "-"
        lines.append(f"{MODES[r['mode']]:<8} {r['processes']:>5} {r['wrapped']:<22} {r['tokens_per_s']:>12,.0f} "
                     f"{pct(r['mfu']):>7} {r['step_s']:>8.3f} {mem:>8}")
    base = results[0]["tokens_per_s"]
    for r in results[1:]:
        lines.append(f"{MODES[r['mode']]} tokens/s relative to no DDP: {r['tokens_per_s'] / base:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser("ddp", __doc__, out="bench-results/ddp.json")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the profile")
    parser.add_argument("--profile", default="h100")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per mode")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation)")
    parser.add_argument("--fsdp", action="store_true", help="also measure fully_shard with one process")
    for name in ("--child", "--config", "--result"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    for name in ("--vocab", "--seq-len"):
        parser.add_argument(name, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        measure(args)
        return 0

    cuda = torch.cuda.is_available()
    profile = args.profile if cuda else "tiny"
    if not cuda:
        print(f"no CUDA: measuring the tiny profile on CPU instead of {args.profile!r}; these numbers only show "
              f"that the path works, run this on a GPU for real ones", file=sys.stderr)
    try:
        cfg, vocab, seq_len = bench_config(profile, list(args.overrides), cuda)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = run_modes(args, cfg, vocab, seq_len)
    shape = (f"{profile}: n_embd {cfg.model.n_embd}, {cfg.model.n_prelude}+{cfg.model.n_core}+{cfg.model.n_coda} blocks, "
             f"vocab {vocab}, batch {cfg.train.batch_size} x {seq_len} tokens, micro_batch {cfg.train.micro_batch or '-'}, "
             f"r_mean {cfg.train.r_mean}, k {cfg.train.k}, {cfg.hardware.dtype}, compile {cfg.hardware.compile}")
    print(shape)
    print(table(results))
    out = write_result(args.out, {"profile": profile, "config": shape, "cuda": cuda, "steps": args.steps,
                                  "warmup": args.warmup, "results": results}, indent=2)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
