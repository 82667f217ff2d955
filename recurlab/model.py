"""The depth-recurrent transformer: prelude, one shared recurrent core, coda.

    from recurlab.config import ModelConfig
    from recurlab.model import RecurrentLM
    model = RecurrentLM(ModelConfig(vocab_size=32))
    logits = model(idx, n_no_grad=4, n_grad=4).logits

Everything that runs the model (training, sweeps, generation, adaptive exit, speculative
decoding, traces) goes through four public steps:

    rope = model.rope(positions)
    e    = model.embed(idx, rope, cache)              # prelude
    s    = model.init_state(e, scale, generator)      # random (or zero) latent start
    s    = model.core_step(s, e, rope, cache, i)      # one recurrence: adapter + R shared blocks
    out  = model.decode(s, rope, cache)               # ln_f, coda, ln_f, tied head

One description, three families (recurlab.config.ModelConfig): recurlab's own models and
Huginn-0125 (the defaults), Ouro (no prelude/coda/adapter, the state starts at the embedding,
ln_f after every step, peri-norm blocks, exit gate) and retrofitted Llama models (pre-norm
blocks, adapter, no norm between steps). The options switch pieces inside these same steps:

    block        sandwich  x = n2(x + attn(n1 x)); x = n4(x + mlp(n3 x))        (Huginn)
                 peri      x = x + n2(attn(n1 x)); x = x + n4(mlp(n3 x))        (Ouro)
                 prenorm   x = x + attn(n1 x);     x = x + mlp(n2 x)            (Llama)
    injection    adapter: Core(A[s; e]);  none: Core(s)
    state_init   random (truncated normal, 0 gives zeros) or embedding (s0 = e)
    step_norm    s = ln_f(Core(..)) after every step;  coda_norm / final_norm: ln_f around the coda
    rotary       pairs: rotate adjacent channels (Huginn);  half: rotate the two halves (Llama, Ouro)
    n_kv_head    grouped-query attention; tie_head; exit_gate: lambda = sigmoid(gate(s)) per step

Parameter names follow the Huginn reference layout (`transformer.wte`, `.prelude`, `.adapter`,
`.core_block`, `.coda`, `.ln_f`, blocks with `norm_1..norm_4`, `attn.Wqkv` with rows [q | k | v],
`attn.proj`, `mlp.fc` with rows [gate | up], `mlp.proj`) so that checkpoints map onto it with
few transforms; the exit gate is `transformer.exit_gate`.

Cache protocol (implemented by the inference engine): attention calls
`cache.attend(layer_key, q, k, v) -> y` with rotary already applied (k, v have n_kv_head heads),
where `layer_key` is ("prelude", i), ("core", iteration, j) or ("coda", i). When the pass is one
column of one row and `cache.takes_column()` says the cache needs no mask for it (sequential decode),
attention calls `cache.attend_column(layer_key, q, k, v)` with heads first instead: q (1, H, 1, D),
k and v (KV, D), returning (1, H, 1, D).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from recurlab.config import ModelConfig


class AttentionCache(Protocol):
    """What attention needs of a cache (the engine's KVCache, WavefrontCache and compiled slot views)."""

    def attend(self, layer_key: tuple, q: Tensor, k: Tensor, v: Tensor) -> Tensor: ...

    def takes_column(self) -> bool: ...

    def attend_column(self, layer_key: tuple, q: Tensor, k: Tensor, v: Tensor) -> Tensor: ...


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """x / rms(x) * weight, computed in float32."""
    if x.dtype == torch.float32 and weight.dtype == torch.float32:
        # the same arithmetic as below in one call (a C++ composite): a decode step runs 4 norms
        # per block and 132 blocks per token at r = 32, so Python-level ops are what costs
        return F.rms_norm(x, weight.shape, weight, eps)
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * weight


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x, self.weight, self.eps)


def rotary_tables(positions: Tensor, head_dim: int, base: float) -> tuple[Tensor, Tensor]:
    """cos/sin of shape (..., T, head_dim/2) for the given integer positions."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    angles = positions.float().unsqueeze(-1) * inv_freq
    return angles.cos(), angles.sin()


def apply_rotary_half(x: Tensor, rope: tuple[Tensor, Tensor]) -> Tensor:
    """Rotate channel i with channel i + D/2 by the position angle (Llama's layout). x: (B, T, ..., D)."""
    cos, sin = rope
    if cos.dim() == 2:  # (T, D/2) shared by the batch
        cos, sin = cos[None], sin[None]
    shape = (cos.shape[0], cos.shape[1], *(1,) * (x.dim() - 3), cos.shape[2])
    cos, sin = cos.view(shape), sin.view(shape)
    xf = x.float()
    x0, x1 = xf.chunk(2, dim=-1)
    return torch.cat((x0 * cos - x1 * sin, x1 * cos + x0 * sin), dim=-1).to(x.dtype)


def apply_rotary(x: Tensor, rope: tuple[Tensor, Tensor]) -> Tensor:
    """Rotate adjacent channel pairs (x0, x1) by the position angle. x: (B, T, ..., D), e.g. (B, T, H, D)
    or q and k together as (B, T, 2, H, D). The pairs are multiplied as complex numbers (x0 + i x1) *
    (cos + i sin): the same products and sums as the real formula, in 4 ops instead of 12."""
    cos, sin = rope
    cis = torch.complex(cos, sin)
    if cis.dim() == 2:  # (T, D/2) shared by the batch
        cis = cis[None]
    cis = cis.view(cis.shape[0], cis.shape[1], *(1,) * (x.dim() - 3), cis.shape[2])
    xf = x if x.dtype == torch.float32 else x.float()
    out = torch.view_as_real(torch.view_as_complex(xf.unflatten(-1, (-1, 2))) * cis).flatten(-2)
    return out if x.dtype == torch.float32 else out.to(x.dtype)


class Rope:
    """The rotary tables of one model pass, `cos, sin = rope` of shape (T, D/2) or (B, T, D/2), and the
    rotation that the pass's attention layers apply to q and k (`style` "pairs" or "half").

    A decode step (one column, one position for the whole batch) rotates by a D x D matrix built once
    per pass: every block then rotates q and k with one matmul instead of ~10 elementwise ops, and a
    step at r = 32 runs 132 blocks. Other passes use the elementwise formulas."""

    def __init__(self, cos: Tensor, sin: Tensor, style: str, matrix: Tensor | None = None):
        self.cos, self.sin, self.style = cos, sin, style
        self._matrix = matrix  # given when it was built outside (a compiled graph takes it as an input)

    def __iter__(self):
        return iter((self.cos, self.sin))

    def matrix(self) -> Tensor:
        """R with x @ R == the rotation of x (D x D, float32), for a single position."""
        if self._matrix is None:
            c, s = self.cos.reshape(-1), self.sin.reshape(-1)
            half = c.numel()
            i = torch.arange(half, device=c.device)
            # output channels a, b of each rotated pair: out[a] = x[a] c - x[b] s, out[b] = x[b] c + x[a] s
            a, b = (2 * i, 2 * i + 1) if self.style == "pairs" else (i, i + half)
            R = torch.zeros(2 * half, 2 * half, device=c.device)
            R[a, a], R[b, a], R[b, b], R[a, b] = c, -s, c, s
            self._matrix = R
        return self._matrix

    def by_matrix(self, x: Tensor) -> Tensor:
        """x @ R in float32, back in x's dtype: the rotation of a single position, any leading shape."""
        R = self.matrix()
        return torch.matmul(x, R) if x.dtype == torch.float32 else torch.matmul(x.float(), R).to(x.dtype)

    def rotate(self, x: Tensor) -> Tensor:
        """x: (B, T, ..., D), e.g. (B, T, H, D) or q and k together as (B, T, 2, H, D)."""
        if x.shape[1] == 1 and self.cos.shape[:-1].numel() == 1:
            return self.by_matrix(x)
        return (apply_rotary if self.style == "pairs" else apply_rotary_half)(x, (self.cos, self.sin))


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head, self.n_kv, self.head_dim = cfg.n_head, cfg.kv_heads, cfg.head_dim
        self.Wqkv = nn.Linear(cfg.n_embd, (cfg.n_head + 2 * self.n_kv) * cfg.head_dim, bias=False)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        # learned biases for q and k, added before the rotation (shape: 2, heads, head_dim)
        self.qk_bias = nn.Parameter(torch.zeros(2, cfg.n_head, cfg.head_dim)) if cfg.qk_bias else None

    def forward(self, x: Tensor, rope, cache: AttentionCache | None = None, layer_key: tuple = ()) -> Tensor:
        B, T, _ = x.shape
        hd = self.head_dim
        # F.linear on the parameters rather than calling the Linear modules: a decode step makes
        # ~1,000 such calls per token, and nn.Module.__call__ costs more than a small matmul's dispatch
        qkv = F.linear(x, self.Wqkv.weight)
        if T == 1 and B == 1 and cache is not None and cache.takes_column():
            return self._decode_column(qkv, rope, cache, layer_key)
        if self.n_kv == self.n_head:
            qkv = qkv.view(B, T, 3, self.n_head, hd)
            qk, v = qkv[:, :, :2], qkv[:, :, 2]
            if self.qk_bias is not None:
                qk = qk + self.qk_bias
            q, k = rope.rotate(qk).unbind(2)  # q and k rotated together: half the ops per block
        else:  # grouped-query attention: fewer key/value heads than query heads
            q, k, v = qkv.split((self.n_head * hd, self.n_kv * hd, self.n_kv * hd), dim=-1)
            q, k, v = q.view(B, T, self.n_head, hd), k.view(B, T, self.n_kv, hd), v.view(B, T, self.n_kv, hd)
            q, k = rope.rotate(q), rope.rotate(k)
        if cache is None:
            y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True,
                                               enable_gqa=self.n_kv != self.n_head)
        else:
            y = cache.attend(layer_key, q, k, v)
        return F.linear(y.transpose(1, 2).reshape(B, T, -1), self.proj.weight)

    def _decode_column(self, qkv: Tensor, rope: Rope, cache: AttentionCache, layer_key: tuple) -> Tensor:
        """The one-column, one-row pass of sequential decoding, with the fewest torch calls: heads as
        rows of one (H + 2 KV, D) matrix, q and k rotated by one matmul with the pass's rotation matrix,
        and the cache writing and attending through `attend_column`. Same arithmetic as `forward`."""
        H, KV = self.n_head, self.n_kv
        heads = qkv.view(-1, self.head_dim)
        qk = heads[:H + KV]
        if self.qk_bias is not None:
            qk = qk + self.qk_bias.view(2 * H, -1)
        qk = rope.by_matrix(qk)
        y = cache.attend_column(layer_key, qk[:H].view(1, H, 1, -1), qk[H:], heads[H + KV:])
        return F.linear(y.view(1, 1, -1), self.proj.weight)


class GatedMLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 2 * cfg.mlp_size, bias=False)
        self.proj = nn.Linear(cfg.mlp_size, cfg.n_embd, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = F.linear(x, self.fc.weight).chunk(2, dim=-1)
        return F.linear(F.silu(gate) * up, self.proj.weight)


class Block(nn.Module):
    """One transformer block; `cfg.block` says where its RMSNorms sit (see the module docstring)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.kind, self.eps = cfg.block, cfg.norm_eps
        self.norm_1 = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.attn = CausalSelfAttention(cfg)
        self.norm_2 = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.mlp = GatedMLP(cfg)
        if cfg.block != "prenorm":
            self.norm_3 = RMSNorm(cfg.n_embd, cfg.norm_eps)
            self.norm_4 = RMSNorm(cfg.n_embd, cfg.norm_eps)

    def forward(self, x: Tensor, rope, cache: AttentionCache | None = None, layer_key: tuple = ()) -> Tensor:
        # submodules' forward and the norm function are called directly: the modules hold the
        # parameters (and their names), but __call__ would cost ~10 us per call in a decode step
        eps, attn, mlp = self.eps, self.attn.forward, self.mlp.forward
        if self.kind == "sandwich":
            x = rms_norm(x + attn(rms_norm(x, self.norm_1.weight, eps), rope, cache, layer_key), self.norm_2.weight, eps)
            return rms_norm(x + mlp(rms_norm(x, self.norm_3.weight, eps)), self.norm_4.weight, eps)
        if self.kind == "peri":
            x = x + rms_norm(attn(rms_norm(x, self.norm_1.weight, eps), rope, cache, layer_key), self.norm_2.weight, eps)
            return x + rms_norm(mlp(rms_norm(x, self.norm_3.weight, eps)), self.norm_4.weight, eps)
        x = x + attn(rms_norm(x, self.norm_1.weight, eps), rope, cache, layer_key)
        return x + mlp(rms_norm(x, self.norm_2.weight, eps))


@dataclass
class ModelOutput:
    logits: Tensor
    loss: Tensor | None = None
    gain: Tensor | None = None  # squared gain of the last core step along a random direction (jacobian_eps)


class RecurrentLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.vocab_size <= 0:
            raise ValueError("ModelConfig.vocab_size must be set before building the model")
        self.cfg = cfg
        d = cfg.n_embd
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(cfg.vocab_size, d),
                prelude=nn.ModuleList(Block(cfg) for _ in range(cfg.n_prelude)),
                core_block=nn.ModuleList(Block(cfg) for _ in range(cfg.n_core_layers)),
                coda=nn.ModuleList(Block(cfg) for _ in range(cfg.n_coda)),
                ln_f=RMSNorm(d, cfg.norm_eps),
            )
        )
        if cfg.is_recurrent and cfg.injection == "adapter":
            # input injection: the state and the prelude output are concatenated, in that order
            self.transformer["adapter"] = nn.Linear(2 * d, d, bias=False)
        if cfg.exit_gate:
            self.transformer["exit_gate"] = nn.Linear(d, 1, bias=True)
        self.lm_head = nn.Linear(d, cfg.vocab_size, bias=False)
        if cfg.tie_head:
            self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        std = 1.0 / math.sqrt(self.cfg.n_embd * 5 / 2)  # small-init as in the Huginn recipe family
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=std, a=-3 * std, b=3 * std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.trunc_normal_(module.weight, std=std, a=-3 * std, b=3 * std)

    # ---- the four public steps -------------------------------------------------------

    def rope(self, positions: Tensor) -> Rope:
        return Rope(*rotary_tables(positions, self.cfg.head_dim, self.cfg.rope_base), self.cfg.rotary)

    def embed(self, idx: Tensor, rope, cache: AttentionCache | None = None) -> Tensor:
        x = self.transformer.wte(idx)
        if self.cfg.embed_scale != 1.0:
            x = x * self.cfg.embed_scale
        for i, block in enumerate(self.transformer.prelude):
            x = block(x, rope, cache, ("prelude", i))
        return x

    def init_state(self, e: Tensor, scale: float | None = None, generator: torch.Generator | None = None,
                   noise: Tensor | None = None) -> Tensor:
        """Random latent start: truncated normal with std `scale` (0 gives zeros), or the embedding
        itself (`state_init: embedding`). `noise`, a standard normal draw of e's shape, replaces the
        draw from `generator` (the engine seeds it per position, so that a token's start does not
        depend on how it was decoded)."""
        if self.cfg.state_init == "embedding":
            return e
        scale = self.cfg.init_scale if scale is None else scale
        if scale == 0 or not self.cfg.is_recurrent:
            return torch.zeros_like(e)
        if noise is not None:
            s = noise.to(device=e.device, dtype=torch.float32).clone()
        else:
            s = torch.randn(e.shape, generator=generator, device=e.device, dtype=torch.float32)
        s = s.clamp_(-3, 3) * scale  # truncation at 3 std; clamping keeps it cheap and reproducible
        if self.cfg.embed_scale != 1.0:
            s = s * self.cfg.embed_scale
        return s.to(e.dtype)

    def core_step(self, s: Tensor, e: Tensor, rope, cache: AttentionCache | None = None, iteration: int = 0) -> Tensor:
        """One recurrence: s' = Core(Adapter([s; e])) (or Core(s) without injection), then ln_f if
        `step_norm`. Baselines without a loop ignore `s`."""
        if not self.cfg.is_recurrent:
            x = e
        elif self.cfg.injection == "adapter":
            x = F.linear(torch.cat([s, e], dim=-1), self.transformer.adapter.weight)
        else:
            x = s
        for j, block in enumerate(self.transformer.core_block):
            x = block(x, rope, cache, ("core", iteration, j))
        if self.cfg.arch == "token_recurrent":
            # the loop may only carry information through vocabulary space
            probs = self.lm_head(self.transformer.ln_f(x)).float().softmax(-1)
            x = (probs @ self.transformer.wte.weight.float()).to(x.dtype)
        if self.cfg.step_norm:
            x = self.transformer.ln_f(x)
        return x

    def decode(self, s: Tensor, rope, cache: AttentionCache | None = None) -> Tensor:
        x = self.transformer.ln_f(s) if self.cfg.coda_norm else s
        for i, block in enumerate(self.transformer.coda):
            x = block(x, rope, cache, ("coda", i))
        return self.lm_head(self.transformer.ln_f(x) if self.cfg.final_norm else x)

    def exit_lambda(self, s: Tensor) -> Tensor:
        """The exit gate's per-token probability of stopping after the step that produced `s` (float32)."""
        if not self.cfg.exit_gate:
            raise ValueError("this model has no exit gate (ModelConfig.exit_gate is false)")
        return torch.sigmoid(self.transformer.exit_gate(s).float().squeeze(-1))

    # ---- training forward ------------------------------------------------------------

    def forward(
        self,
        idx: Tensor,
        n_no_grad: int = 0,
        n_grad: int = 1,
        targets: Tensor | None = None,
        init_scale: float | None = None,
        activation_checkpointing: bool = False,
        generator: torch.Generator | None = None,
        jacobian_eps: float = 0.0,
    ) -> ModelOutput:
        """Run `n_no_grad` iterations without gradient, then `n_grad` with it (truncated backprop).

        Models without recurrence run their core exactly once whatever the counts say.
        `jacobian_eps` > 0 also measures the last core step's squared gain
        ||f(s + d) - f(s)||^2 / ||d||^2 for a random d of relative size jacobian_eps per token: a
        finite-difference, one-sample estimate of ||J||_F^2 / n_embd that training can penalize.
        """
        if not self.cfg.is_recurrent:
            n_no_grad, n_grad = 0, 1
        positions = torch.arange(idx.shape[1], device=idx.device)
        rope = self.rope(positions)
        e = self.embed(idx, rope)
        s = self.init_state(e, init_scale, generator)
        if n_no_grad:
            with torch.no_grad():
                for i in range(n_no_grad):
                    s = self.core_step(s, e, rope, None, i)
        gain = None
        for i in range(n_no_grad, n_no_grad + n_grad):
            s_in = s
            if activation_checkpointing and self.training:
                s = checkpoint(self.core_step, s, e, rope, None, i, use_reentrant=False)
            else:
                s = self.core_step(s, e, rope, None, i)
            if jacobian_eps and i == n_no_grad + n_grad - 1:
                gain = self._step_gain(s_in, s, e, rope, i, jacobian_eps, generator)
        logits = self.decode(s, rope)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100)
        return ModelOutput(logits=logits, loss=loss, gain=gain)

    def _step_gain(self, s_in: Tensor, s_out: Tensor, e: Tensor, rope, i: int, eps: float, generator) -> Tensor:
        s_in = s_in.detach()
        d = torch.randn(s_in.shape, generator=generator, device=s_in.device, dtype=torch.float32).to(s_in.dtype)
        # per token, d has eps times the norm of the state it perturbs
        d = d * (eps * s_in.norm(dim=-1, keepdim=True) / d.norm(dim=-1, keepdim=True).clamp_min(1e-12))
        moved = self.core_step(s_in + d, e, rope, None, i) - s_out
        return (moved.float().pow(2).sum(-1) / d.float().pow(2).sum(-1).clamp_min(1e-12)).mean()

    def num_params(self, exclude_embedding: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if exclude_embedding:
            n -= self.transformer.wte.weight.numel()
        return n
