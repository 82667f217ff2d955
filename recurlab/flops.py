"""FLOPs per token and MFU for recurrent and plain models, in one place.

    flops = train_flops_per_token(cfg.model, n_no_grad=4, n_grad=4, seq_len=128)
    mfu(flops * tokens_per_s, device)    # None on CPU or an unknown GPU

Matmul FLOPs only (2 per multiply-add); attention scores use the causal average context
length seq_len/2. Iterations under no_grad cost a forward pass; those with gradient cost
forward + backward (3x). The prelude, coda and head always get gradients.
"""

from __future__ import annotations

from recurlab.config import ModelConfig

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


def peak_flops(device_name: str) -> float | None:
    for key, peak in PEAK_BF16.items():
        if key in device_name:
            return peak
    return None


def mfu(flops_per_s: float, device_name: str) -> float | None:
    peak = peak_flops(device_name)
    return flops_per_s / peak if peak else None
