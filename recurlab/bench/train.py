"""Training throughput and memory: recurrent model vs a plain transformer of equal FLOPs/token.

    python -m recurlab.bench.train                       # cpu profile shape, on the CPU
    python -m recurlab.bench.train --profile h100 --device cuda --steps 20

Prints, side by side in one run:
  * training tokens/s of the recurrent model (log-normal Poisson depth, r_mean, k) and of a
    fixed-depth transformer whose core has as many distinct layers as make its training FLOPs
    per token equal the recurrent model's expected FLOPs (no-grad iterations cost forward only);
  * peak memory of one training step at r = r_mean and r = 4*r_mean with k fixed: CUDA peak
    allocated bytes on a GPU, bytes saved for backward (autograd's saved tensors) on the CPU.
Writes the numbers as JSON to --out (default bench-results/train.json).
"""

from __future__ import annotations

import time

import torch

from recurlab.bench.results import bench_parser, write_result
from recurlab.config import load_profile
from recurlab.data import make_data
from recurlab.depth_sampler import sample_depth
from recurlab.devices import resolve_device
from recurlab.flops import mfu, train_flops_per_token
from recurlab.memory import saved_bytes
from recurlab.model import RecurrentLM
from recurlab.train import build_optimizer


def expected_depth(cfg, steps: int = 4000) -> tuple[float, float]:
    draws = [sample_depth(cfg.train, s, cfg.train.seed) for s in range(steps)]
    return sum(a for a, _ in draws) / steps, sum(b for _, b in draws) / steps


def autocast_for(cfg, device):
    if device.type == "cuda" and cfg.hardware.dtype == "bfloat16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(cfg, device, steps: int, warmup: int) -> dict:
    torch.manual_seed(0)
    model = RecurrentLM(cfg.model).to(device)
    opt = build_optimizer(model, cfg, device)
    data = make_data(cfg, None)
    batch = cfg.train.micro_batch or cfg.train.batch_size
    tokens = flops = 0.0
    t0 = None
    for step in range(warmup + steps):
        if step == warmup:
            sync(device)
            t0, tokens, flops = time.perf_counter(), 0.0, 0.0
        idx, tgt = data.train_batch(step, batch)
        idx, tgt = idx.to(device), tgt.to(device)
        n_ng, n_g = sample_depth(cfg.train, step, cfg.train.seed, cfg.model.is_recurrent)
        with autocast_for(cfg, device):
            loss = model(idx, n_ng, n_g, tgt).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += idx.numel()
        flops += train_flops_per_token(cfg.model, n_ng, n_g, idx.shape[1]) * idx.numel()
    sync(device)
    dt = time.perf_counter() - t0
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"params": model.num_params(), "tokens_per_s": tokens / dt, "flops_per_token": flops / tokens,
            "mfu": mfu(flops / dt, name)}


def peak_memory(cfg, device, r: int) -> int:
    """Bytes of one training step at r iterations (k of them with gradient)."""
    torch.manual_seed(0)
    model = RecurrentLM(cfg.model).to(device)
    data = make_data(cfg, None)
    idx, tgt = data.train_batch(0, cfg.train.micro_batch or cfg.train.batch_size)
    idx, tgt = idx.to(device), tgt.to(device)
    n_g = min(cfg.train.k, r)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        with autocast_for(cfg, device):
            model(idx, r - n_g, n_g, tgt).loss.backward()
        sync(device)
        return torch.cuda.max_memory_allocated(device)
    return saved_bytes(lambda: model(idx, r - n_g, n_g, tgt).loss.backward())


def main(argv=None) -> dict:
    ap = bench_parser("train", __doc__, out="bench-results/train.json")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("overrides", nargs="*", help="key=value profile overrides")
    args = ap.parse_args(argv)
    cfg = load_profile(args.profile, args.overrides)
    device = torch.device(resolve_device(args.device))
    if device.type == "cpu" and cfg.hardware.threads:
        torch.set_num_threads(cfg.hardware.threads)
    n_ng, n_g = expected_depth(cfg)
    # distinct core layers that give a plain transformer the recurrent model's training FLOPs:
    # 3 * L = 3 * R * (n_g + n_ng) - 2 * R * n_ng
    layers = max(1, round(cfg.model.n_core * (n_g + n_ng / 3)))
    plain = load_profile(args.profile, [*args.overrides, "model.arch=fixed_depth_matched", f"model.matched_r={layers}"])
    plain.model.n_core = 1
    rec = throughput(cfg, device, args.steps, args.warmup)
    base = throughput(plain, device, args.steps, args.warmup)
    r = cfg.train.r_mean
    mem = {f"r={r}": peak_memory(cfg, device, r), f"r={4 * r}": peak_memory(cfg, device, 4 * r)}
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "profile": args.profile, "r_mean": r, "k": cfg.train.k, "expected_no_grad": n_ng, "expected_grad": n_g,
        "recurrent": rec, "plain_equal_flops": {**base, "core_layers": layers},
        "memory_kind": "cuda peak allocated bytes" if device.type == "cuda" else "bytes saved for backward",
        "peak_memory": mem,
    }
    fmt = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    print(f"device {result['device']}, profile {args.profile}, r_mean {r}, k {cfg.train.k}")
    print(f"{'model':<28}{'params':>12}{'GFLOP/token':>14}{'tokens/s':>12}{'MFU':>8}")
    for label, row in (("recurrent (sampled r)", rec), (f"plain, {layers} core layers", base)):
        print(f"{label:<28}{row['params']:>12,}{row['flops_per_token'] / 1e9:>14.4f}{row['tokens_per_s']:>12,.0f}{fmt(row['mfu']):>8}")
    print(f"peak memory ({result['memory_kind']}), k = {cfg.train.k}:")
    for key, v in mem.items():
        print(f"  {key:<8}{v / 2**20:>10.1f} MiB")
    write_result(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
