"""FLOPs per token and MFU for recurrent and plain models, in one place.

    flops = train_flops_per_token(cfg.model, n_no_grad=4, n_grad=4, seq_len=128)
    mfu(flops * tokens_per_s, device)    # None on CPU or an unknown GPU
    train_flops_per_token_array(cfg.model, r_no_grad, r_grad, seq_len)   # per metric row (numpy columns)

Matmul FLOPs only (2 per multiply-add); attention scores use the causal average context
length seq_len/2. Iterations under no_grad cost a forward pass; those with gradient cost
forward + backward (3x). The prelude, coda and head always get gradients. So a step of
truncated backpropagation costs, per token,

    F_train = 3 * F_fwd(r_no_grad + r_grad) - 2 * (F_fwd(r_no_grad) - F_fwd(0))

and not 6N (which would count every iteration as having gradient): MFU_FORMULA.
"""

from __future__ import annotations

import numpy as np

from recurlab.config import ModelConfig

MFU_FORMULA = "MFU = (3 F(r_no_grad + r_grad) - 2 F_core(r_no_grad)) x tokens/s / peak; F: forward FLOPs per token"

# dense bf16 peak FLOP/s by device-name substring
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "4090": 165e12, "A6000": 155e12, "3090": 71e12}


def layer_flops(cfg: ModelConfig, seq_len: int) -> float:
    d = cfg.n_embd
    matmuls = 2 * (4 * d * d + 3 * d * cfg.mlp_size)
    attention = 2 * 2 * d * (seq_len / 2)
    return matmuls + attention


def forward_flops_per_token(cfg: ModelConfig, iterations: int, seq_len: int) -> float:
    """Forward FLOPs per token at `iterations` recurrences (1 for models without a loop)."""
    layer = layer_flops(cfg, seq_len)
    iters = iterations if cfg.is_recurrent else 1
    core = iters * (cfg.n_core_layers * layer + (2 * 2 * cfg.n_embd * cfg.n_embd if cfg.is_recurrent else 0))
    if cfg.arch == "token_recurrent":
        core += iters * 2 * 2 * cfg.n_embd * cfg.vocab_size
    return (cfg.n_prelude + cfg.n_coda) * layer + core + 2 * cfg.n_embd * cfg.vocab_size


def train_flops_per_token(cfg: ModelConfig, n_no_grad: int, n_grad: int, seq_len: int) -> float:
    total = forward_flops_per_token(cfg, n_no_grad + n_grad, seq_len)
    no_grad = forward_flops_per_token(cfg, n_no_grad, seq_len) - forward_flops_per_token(cfg, 0, seq_len)
    if not cfg.is_recurrent:
        no_grad = 0.0
    return 3 * total - 2 * no_grad


def train_flops_per_token_array(cfg: ModelConfig, r_no_grad, r_grad, seq_len) -> np.ndarray:
    """train_flops_per_token for columns of metric rows at once: for a fixed sequence length the
    cost is affine in the two iteration counts, so one evaluation per distinct length suffices."""
    ng, g, seq = (np.asarray(a, dtype=np.float64) for a in (r_no_grad, r_grad, seq_len))
    out = np.full(ng.shape, np.nan)
    for length in np.unique(seq[np.isfinite(seq)]):
        at = seq == length
        base = forward_flops_per_token(cfg, 0, float(length))
        per_iter = forward_flops_per_token(cfg, 1, float(length)) - base  # 0 without a loop
        out[at] = 3 * (base + (ng[at] + g[at]) * per_iter) - 2 * ng[at] * per_iter
    return out


def peak_flops(device_name: str, peak_tflops: float = 0.0) -> float | None:
    """FLOP/s the device peaks at: hardware.peak_tflops when set, else by name (None if unknown)."""
    if peak_tflops > 0:
        return peak_tflops * 1e12
    for key, peak in PEAK_BF16.items():
        if key in device_name:
            return peak
    return None


def mfu(flops_per_s: float, device_name: str, peak_tflops: float = 0.0) -> float | None:
    peak = peak_flops(device_name, peak_tflops)
    return flops_per_s / peak if peak else None
