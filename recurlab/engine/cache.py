"""A static KV cache with one slot per (layer, core iteration), implementing the model's cache protocol.

    cache = KVCache(model.cfg, batch=2, max_len=128, iterations=16, budget=None, device="cpu",
                    dtype=torch.float32, start=torch.tensor([3, 0]))   # left padding per row
    cache.begin(n_new)                  # the next model pass covers columns length .. length+n_new
    ...model.embed / core_step / decode with cache=cache...
    cache.commit()                      # length += n_new
    cache.truncate(n)                   # roll back (speculative decoding)

Layout: prelude and coda layers have one slot; core layer j has `slots` slots, and iteration i
reads and writes slot i mod slots (`budget`; no budget means one slot per iteration). All rows
share one column index (prompts are left-padded); `start[b]` is the first real column of row b
and keys before it are masked out.

Early exit: `active` (a bool per row) masks core writes, and `finish(rows, e)` records that a
row's token ran e iterations. What a later token at iteration i >= e reads of it depends on
`lookup`:
  "latest"   (default) the entry of its last iteration e-1, copied into the slots of iterations
             e .. iterations-1: the reference implementation's `latest-m4` strategy;
  "existing" nothing: at iteration i a token attends only to the tokens that ran iteration i
             (and to itself): the reference's default strategy ("full", which stacks only the
             entries present at that iteration), under which its published exit results were run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from recurlab.config import ModelConfig


def attend_static(slot: Tensor, pos: Tensor, mask: Tensor, q: Tensor, k: Tensor, v: Tensor, gqa: bool) -> Tensor:
    """Write one column's k and v at column `pos` (a (1,) long tensor) of a slot buffer (2, B, H,
    max_len, D) and attend over all its columns under `mask`: shapes that do not depend on the length
    (CUDA graphs, torch.compile). q, k, v: (B, 1, H, D); returns (B, H, 1, D)."""
    slot.index_copy_(3, pos, torch.stack((k, v)).transpose(2, 3).to(slot.dtype))
    return F.scaled_dot_product_attention(q.transpose(1, 2), slot[0].to(q.dtype), slot[1].to(q.dtype),
                                          attn_mask=mask, enable_gqa=gqa)


class KVCache:
    def __init__(
        self,
        cfg: ModelConfig,
        batch: int,
        max_len: int,
        iterations: int,
        budget: int | None = None,
        device="cpu",
        dtype=torch.float32,
        start: Tensor | None = None,
        lookup: str = "latest",
    ):
        if lookup not in ("latest", "existing"):
            raise ValueError(f"cache lookup must be 'latest' or 'existing', got {lookup!r}")
        self.lookup = lookup
        self.batch, self.max_len, self.iterations = batch, max_len, iterations
        self.slots = min(budget, iterations) if budget else iterations
        shape = (batch, cfg.kv_heads, max_len, cfg.head_dim)  # grouped-query: n_kv_head heads
        self.gqa = cfg.kv_heads != cfg.n_head

        def alloc(n: int) -> Tensor:
            return torch.zeros((n, 2, *shape), device=device, dtype=dtype)  # [slot, k|v, B, H, T, D]

        self.prelude = [alloc(1) for _ in range(cfg.n_prelude)]
        self.core = [alloc(self.slots) for _ in range(cfg.n_core_layers)]
        self.coda = [alloc(1) for _ in range(cfg.n_coda)]
        self.start = (start if start is not None else torch.zeros(batch, dtype=torch.long)).to(device)
        self.padded = bool(self.start.any())
        self.length = 0  # committed columns
        self.n_new = 0  # columns of the pass in progress
        self.active: Tensor | None = None  # None: all rows write; else the rows whose core entries this pass writes
        self._pass_mask: Tensor | None = None
        self._static_pos: Tensor | None = None
        # iterations each column's token ran ("existing" lookup); `shallow` once any ran fewer
        self.depth = torch.full((batch, max_len), iterations, dtype=torch.long, device=self.start.device)
        self.shallow = False

    # ---- bookkeeping -----------------------------------------------------------------
    def memory_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.prelude + self.core + self.coda)

    def begin(self, n_new: int) -> None:
        if self.length + n_new > self.max_len:
            raise RuntimeError(f"KV cache holds {self.max_len} columns; {self.length} used, {n_new} more requested")
        self.n_new = n_new
        # one new column of unpadded rows sees every cached column: no mask, which lets attention
        # skip building and applying one per layer and iteration ("existing" lookup needs one)
        plain = n_new == 1 and not self.padded and not self.shallow
        self._pass_mask = None if plain else self._mask(self.length, self.length + n_new)
        self.depth[:, self.length:self.length + n_new] = self.iterations

    def commit(self) -> None:
        self.length += self.n_new
        self.n_new = 0
        self.active = None

    def truncate(self, length: int) -> None:
        """Forget columns from `length` on (they are overwritten by the next pass)."""
        if not 0 <= length <= self.length:
            raise RuntimeError(f"cannot truncate a cache of length {self.length} to {length}")
        self.length = length
        self.n_new = 0
        self.active = None

    def positions(self) -> Tensor:
        """Rotary positions of the pass's columns: (T,) without padding, else (B, T)."""
        cols = torch.arange(self.length, self.length + self.n_new, device=self.start.device)
        if not self.padded:
            return cols
        return (cols[None, :] - self.start[:, None]).clamp_min(0)

    def slot_of(self, iteration: int) -> int:
        return iteration % self.slots

    # ---- the model's protocol ----------------------------------------------------------
    def _buffer(self, layer_key: tuple) -> tuple[Tensor, int, bool]:
        kind = layer_key[0]
        if kind == "core":
            return self.core[layer_key[2]], self.slot_of(layer_key[1]), True
        if kind == "prelude":
            return self.prelude[layer_key[1]], 0, False
        return self.coda[layer_key[1]], 0, False

    def attend(self, layer_key: tuple, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """q, k, v: (B, T, H, D) with rotary applied; returns (B, H, T, D)."""
        buf, slot, is_core = self._buffer(layer_key)
        if self._static_pos is not None:
            return self._attend_static(buf, slot, q, k, v)
        lo, hi = self.length, self.length + q.shape[1]
        kbuf, vbuf = buf[slot]  # (B, H, max_len, D) views, no copy
        if is_core and self.active is not None:
            kv = torch.stack((k, v)).transpose(2, 3).to(buf.dtype)  # (2, B, H, T, D)
            keep = self.active[None, :, None, None, None]
            buf[slot, :, :, :, lo:hi] = torch.where(keep, kv, buf[slot, :, :, :, lo:hi])
        else:  # written in place: no stacked temporary per layer and step
            kbuf[:, :, lo:hi] = k.transpose(1, 2)
            vbuf[:, :, lo:hi] = v.transpose(1, 2)
        # an inactive row attends to its kept entry; its output is discarded by the engine
        keys, values = kbuf[:, :, :hi], vbuf[:, :, :hi]
        mask = self._pass_mask
        if is_core and self.shallow and mask is not None:
            # "existing": earlier tokens that did not run this iteration are not read (with no mask,
            # this pass began before any token exited early, so every earlier column ran)
            ran = self.depth[:, :hi] > layer_key[1]
            ran[:, lo:hi] = True
            mask = mask & ran[:, None, None, :]
        if keys.dtype != q.dtype:
            keys, values = keys.to(q.dtype), values.to(q.dtype)
        return F.scaled_dot_product_attention(q.transpose(1, 2), keys, values, attn_mask=mask,
                                              enable_gqa=self.gqa)

    def takes_column(self) -> bool:
        """Whether this pass is a plain decode column: one row, no mask, no masked writes, no static
        addressing (attention then calls `attend_column`)."""
        return self.batch == 1 and self._pass_mask is None and self.active is None and self._static_pos is None

    def attend_column(self, layer_key: tuple, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """`attend` for a plain decode column with heads first: q (1, H, 1, D), k and v (KV, D); returns
        (1, H, 1, D). Written for the fewest torch calls: it runs once per block of every decode step."""
        buf, slot, _ = self._buffer(layer_key)
        kv = buf[slot, :, 0]  # (2, KV, max_len, D)
        lo = self.length
        kv[:, :, lo] = torch.stack((k, v))
        keys, values = kv[:, None, :, :lo + 1]  # (1, KV, lo + 1, D) each
        if keys.dtype != q.dtype:
            keys, values = keys.to(q.dtype), values.to(q.dtype)
        return F.scaled_dot_product_attention(q, keys, values, enable_gqa=self.gqa)

    def _mask(self, lo: int, hi: int) -> Tensor:
        """(B, 1, T, hi): causal, without left padding; a padding column still sees itself (no NaN)."""
        dev = self.start.device
        q_cols = torch.arange(lo, hi, device=dev)[:, None]
        k_cols = torch.arange(hi, device=dev)[None, :]
        causal = k_cols <= q_cols
        real = k_cols[None] >= self.start[:, None, None]
        return ((causal[None] & real) | (k_cols == q_cols)[None])[:, None]

    # ---- static shapes (CUDA graphs, torch.compile) ---------------------------------------
    def begin_static(self, pos: Tensor) -> Tensor:
        """Start a one-column pass at column `pos` (a 0-d long tensor, e.g. a graph's static input)
        with shapes that do not depend on the length: attention spans all `max_len` columns under a
        mask. Returns the rotary positions (B, 1). End with `end_static(steps=1)`."""
        self._static_pos = pos.reshape(1)
        self._pass_mask = self.static_mask(pos)
        return (pos - self.start)[:, None].clamp_min(0)

    def static_mask(self, pos: Tensor) -> Tensor:
        """(B, 1, 1, max_len): the columns a one-column pass at column `pos` attends to."""
        cols = torch.arange(self.max_len, device=pos.device)
        return ((cols <= pos) & (cols[None] >= self.start[:, None]))[:, None, None, :]

    def end_static(self, steps: int = 1) -> None:
        self._static_pos = None
        self.length += steps

    def _attend_static(self, buf: Tensor, slot: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        return attend_static(buf[slot], self._static_pos, self._pass_mask, q, k, v, self.gqa)

    # ---- early exit --------------------------------------------------------------------
    def finish(self, rows: Tensor, used: int) -> None:
        """Rows (bool, B) whose token in this pass stopped after `used` iterations. "latest": copy
        the entry of iteration used-1 into the slots of iterations used .. iterations-1, for every
        core layer; "existing": record the depth, so that later tokens skip it past `used`."""
        if used >= self.iterations or not bool(rows.any()):
            return
        lo, hi = self.length, self.length + self.n_new
        if self.lookup == "existing":
            self.depth[:, lo:hi] = torch.where(rows[:, None], torch.full_like(self.depth[:, lo:hi], used),
                                               self.depth[:, lo:hi])
            self.shallow = True
            return
        src_slot = self.slot_of(used - 1)
        targets = sorted({self.slot_of(i) for i in range(used, self.iterations)} - {src_slot})
        for buf in self.core:
            src = buf[src_slot, :, :, :, lo:hi]
            for t in targets:
                cur = buf[t, :, :, :, lo:hi]
                buf[t, :, :, :, lo:hi] = torch.where(rows[None, :, None, None, None], src, cur)
