"""A KV cache for depth batching: every row is its own sequence, with its own length, and every row's
token may be at its own core iteration.

    cache = DepthCache(model.cfg, rows=32, max_len=96, iterations=16, budget=None, device="cpu",
                       dtype=torch.float32, lookup="latest")
    cache.select(rows, cols, n_new=1)       # the next model call covers these rows, from these columns
    cache.iterations_of = its               # core calls: each selected row's iteration (None otherwise)
    ...model.embed / core_step / decode with cache=cache...
    cache.finish(rows, cols, used)          # those rows' tokens stopped after `used` iterations (per row)

It implements the model's cache protocol (recurlab.model) like recurlab.engine.cache.KVCache, with
the same layout per row: prelude and coda layers have one slot, core layer j has `slots` slots and
iteration i reads and writes slot i mod slots (`budget`). What differs is addressing: KVCache shares
one column index across left-padded rows and one iteration per core call; here each selected row
writes at its own columns and each row's core entries go to its own iteration's slot, so one model
call can carry tokens of unrelated sequences at different depths. Attention reads only the row's
own columns up to the query's (a causal mask per row): right padding of a multi-column call
(prefill) is never read by a real column, and its entries are overwritten before they are read.

The two lookups for tokens that exited early behave as in KVCache: "latest" copies a token's last
entry into the slots of the iterations it skipped; "existing" records its depth, and a later token at
iteration i reads only the columns that ran iteration i (and its own).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from recurlab.config import ModelConfig


class DepthCache:
    def __init__(self, cfg: ModelConfig, rows: int, max_len: int, iterations: int, budget: int | None = None,
                 device="cpu", dtype=torch.float32, lookup: str = "latest"):
        if lookup not in ("latest", "existing"):
            raise ValueError(f"cache lookup must be 'latest' or 'existing', got {lookup!r}")
        self.lookup = lookup
        self.rows, self.max_len, self.iterations = rows, max_len, iterations
        self.slots = min(budget, iterations) if budget else iterations
        self.gqa = cfg.kv_heads != cfg.n_head
        shape = (2, rows, cfg.kv_heads, max_len, cfg.head_dim)  # [k|v, row, head, column, dim]
        self.prelude = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_prelude)]
        self.core = [torch.zeros((self.slots, *shape), device=device, dtype=dtype) for _ in range(cfg.n_core_layers)]
        self.coda = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_coda)]
        self.device = torch.device(device)
        # iterations each column's token ran ("existing"), per row
        self.depth = torch.full((rows, max_len), iterations, dtype=torch.long, device=self.device)
        self.iterations_of: Tensor | None = None  # (n,) core iteration of each selected row
        self._sel: Tensor | None = None

    def memory_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.prelude + self.core + self.coda)

    # ---- selection ---------------------------------------------------------------------
    def select(self, rows: Tensor, cols: Tensor, n_new: int = 1) -> Tensor:
        """The next model call covers `n_new` columns of each of `rows` (n,), the first at `cols` (n,).
        Returns the rotary positions (n, n_new): a row's columns are its positions (no padding)."""
        if int(cols.max()) + n_new > self.max_len:
            raise RuntimeError(f"depth cache holds {self.max_len} columns; {int(cols.max()) + n_new} requested")
        self._sel = rows
        self._grid = cols[:, None] + torch.arange(n_new, device=cols.device)[None]  # (n, T) query columns
        self._hi = int(cols.max()) + n_new
        keys = torch.arange(self._hi, device=cols.device)
        self._mask = (keys[None, None, :] <= self._grid[:, :, None])[:, None]  # (n, 1, T, hi)
        self.iterations_of = None
        return self._grid

    def begin_tokens(self) -> None:
        """The selected columns hold new tokens: nothing is known of their depth yet."""
        self.depth[self._sel[:, None], self._grid] = self.iterations

    # ---- the model's protocol ----------------------------------------------------------
    def takes_column(self) -> bool:
        return False  # rows differ in length and depth: attention always goes through `attend`

    def attend_column(self, layer_key, q, k, v):  # never called: takes_column is False
        raise NotImplementedError

    def attend(self, layer_key: tuple, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """q, k, v: (n, T, H, D) for the selected rows, rotary applied; returns (n, H, T, D)."""
        kind = layer_key[0]
        rows, grid, hi = self._sel[:, None], self._grid, self._hi
        kv = torch.stack((k, v), dim=2)  # (n, T, 2, KV, D)
        mask = self._mask
        if kind == "core":
            buf = self.core[layer_key[2]]
            slot = (self.iterations_of % self.slots)[:, None]
            buf[slot, :, rows, :, grid] = kv.to(buf.dtype)
            keys = buf[:, :, :, :, :hi][slot[:, 0], :, rows[:, 0]]  # (n, 2, KV, hi, D): each row's own slot
            if self.lookup == "existing":
                ran = self.depth[rows[:, 0], :hi] > self.iterations_of[:, None]  # (n, hi)
                own = torch.zeros_like(ran)
                own.scatter_(1, grid, True)
                mask = mask & (ran | own)[:, None, None, :]
        else:
            buf = (self.prelude if kind == "prelude" else self.coda)[layer_key[1]]
            buf[:, rows, :, grid] = kv.to(buf.dtype)
            keys = buf[:, :, :, :hi][:, rows[:, 0]].transpose(0, 1)  # (n, 2, KV, hi, D)
        if keys.dtype != q.dtype:
            keys = keys.to(q.dtype)
        return F.scaled_dot_product_attention(q.transpose(1, 2), keys[:, 0], keys[:, 1], attn_mask=mask,
                                              enable_gqa=self.gqa)

    # ---- early exit --------------------------------------------------------------------
    def finish(self, rows: Tensor, cols: Tensor, used: Tensor) -> None:
        """Rows (n,) whose token at column cols (n,) stopped after used (n,) iterations: "latest" copies
        each one's entry of iteration used-1 into the slots of iterations used .. iterations-1 (as
        KVCache.finish does for one row); "existing" records the depth."""
        short = used < self.iterations
        if not bool(short.any()):
            return
        rows, cols, used = rows[short], cols[short], used[short]
        if self.lookup == "existing":
            self.depth[rows, cols] = used
            return
        for u in used.unique().tolist():  # rows that ran as long share their source and target slots
            pick = used == u
            r, c = rows[pick], cols[pick]
            src = self.slot_of(u - 1)
            targets = sorted({self.slot_of(i) for i in range(u, self.iterations)} - {src})
            if not targets:
                continue
            t = torch.tensor(targets, device=self.device)
            for buf in self.core:
                entry = buf[src, :, r, :, c]  # (m, 2, KV, D)
                buf[t[:, None], :, r[None], :, c[None]] = entry[None].expand(len(targets), *entry.shape)

    def slot_of(self, iteration: int) -> int:
        return iteration % self.slots
