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
        # [row, column, k|v, head, dim] (core: a slot axis first): one (row, column) entry is contiguous,
        # so that a call writes all its entries with one index_copy_ and reads each row with one gather
        entry = (2, cfg.kv_heads, cfg.head_dim)
        self.prelude = [torch.zeros((rows, max_len, *entry), device=device, dtype=dtype) for _ in range(cfg.n_prelude)]
        self.core = [torch.zeros((self.slots, rows, max_len, *entry), device=device, dtype=dtype)
                     for _ in range(cfg.n_core_layers)]
        self.coda = [torch.zeros((rows, max_len, *entry), device=device, dtype=dtype) for _ in range(cfg.n_coda)]
        self.device = torch.device(device)
        # iterations each column's token ran ("existing"), per row
        self.depth = torch.full((rows, max_len), iterations, dtype=torch.long, device=self.device)
        self._its: Tensor | None = None

    def memory_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.prelude + self.core + self.coda)

    # ---- selection ---------------------------------------------------------------------
    def select(self, rows: Tensor, cols: Tensor, n_new: int = 1) -> Tensor:
        """The next model call covers `n_new` columns of each of `rows` (n,), the first at `cols` (n,).
        Returns the rotary positions (n, n_new): a row's columns are its positions (no padding)."""
        if int(cols.max()) + n_new > self.max_len:
            raise RuntimeError(f"depth cache holds {self.max_len} columns; {int(cols.max()) + n_new} requested")
        grid = cols[:, None] + torch.arange(n_new, device=cols.device)[None]  # (n, T) query columns
        self._hi = int(cols.max()) + n_new
        keys = torch.arange(self._hi, device=cols.device)
        mask = (keys[None, None, :] <= grid[:, :, None])[:, None]  # (n, 1, T, hi)
        self._full = (rows, grid, mask)
        self.narrow(None)
        return grid

    def narrow(self, pick: Tensor | None) -> None:
        """Restrict the selection to some of its rows (`pick`: positions in it), or restore it (None):
        the stages of one step share one selection."""
        rows, grid, mask = self._full
        if pick is not None:
            rows, grid, mask = rows[pick], grid[pick], mask[pick]
        self._rows, self._grid, self._mask = rows, grid, mask
        self._entries = (rows[:, None] * self.max_len + grid).flatten()  # (n T,) entries of one slot
        self._its = None

    @property
    def iterations_of(self) -> Tensor | None:
        """(n,) the core iteration of each selected row in the coming core call."""
        return self._its

    @iterations_of.setter
    def iterations_of(self, its: Tensor | None) -> None:
        self._its = its
        if its is None:
            return
        slot = its % self.slots
        T = self._grid.shape[1]
        self._core_entries = (slot.repeat_interleave(T) * (self.rows * self.max_len) + self._entries)
        self._core_rows = slot * self.rows + self._rows  # (n,) each row's own slot, as a row of (slots * rows)
        self._core_mask = self._mask
        if self.lookup == "existing":
            ran = self.depth[self._rows, :self._hi] > its[:, None]  # (n, hi)
            own = torch.zeros_like(ran)
            own.scatter_(1, self._grid, True)
            self._core_mask = self._mask & (ran | own)[:, None, None, :]

    def begin_tokens(self) -> None:
        """The selected columns hold new tokens: nothing is known of their depth yet."""
        self.depth.view(-1)[self._entries] = self.iterations

    # ---- the model's protocol ----------------------------------------------------------
    def takes_column(self) -> bool:
        return False  # rows differ in length and depth: attention always goes through `attend`

    def attend_column(self, layer_key, q, k, v):  # never called: takes_column is False
        raise NotImplementedError

    def attend(self, layer_key: tuple, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """q, k, v: (n, T, H, D) for the selected rows, rotary applied; returns (n, H, T, D)."""
        n = q.shape[0]
        kv = torch.stack((k, v), dim=2).flatten(0, 1)  # (n T, 2, KV, D)
        if layer_key[0] == "core":
            buf = self.core[layer_key[2]]
            buf.view(-1, *buf.shape[3:]).index_copy_(0, self._core_entries, kv.to(buf.dtype))
            rows, mask = self._core_rows, self._core_mask
            table = buf.view(-1, *buf.shape[2:])  # (slots * rows, max_len, 2, KV, D)
        else:
            buf = (self.prelude if layer_key[0] == "prelude" else self.coda)[layer_key[1]]
            buf.view(-1, *buf.shape[2:]).index_copy_(0, self._entries, kv.to(buf.dtype))
            rows, mask, table = self._rows, self._mask, buf
        got = table[:, :self._hi].index_select(0, rows)  # (n, hi, 2, KV, D)
        if got.dtype != q.dtype:
            got = got.to(q.dtype)
        keys, values = got.permute(2, 0, 3, 1, 4).unbind(0)  # (n, KV, hi, D) each
        return F.scaled_dot_product_attention(q.transpose(1, 2), keys, values, attn_mask=mask, enable_gqa=self.gqa)

    # ---- early exit --------------------------------------------------------------------
    def finish(self, rows: list[int], cols: list[int], used: list[int]) -> None:
        """Rows whose token at column cols[k] stopped after used[k] iterations: "latest" copies each
        one's entry of iteration used-1 into the slots of iterations used .. iterations-1 (as
        KVCache.finish does for one row); "existing" records the depth."""
        short = [k for k, u in enumerate(used) if u < self.iterations]
        if not short:
            return
        if self.lookup == "existing":
            at = torch.tensor([rows[k] * self.max_len + cols[k] for k in short], device=self.device)
            self.depth.view(-1)[at] = torch.tensor([used[k] for k in short], device=self.device)
            return
        per_slot = self.rows * self.max_len
        src_idx, dst_idx = [], []
        for k in short:
            entry, u = rows[k] * self.max_len + cols[k], used[k]
            src = self.slot_of(u - 1)
            for t in {self.slot_of(i) for i in range(u, self.iterations)} - {src}:
                src_idx.append(src * per_slot + entry)
                dst_idx.append(t * per_slot + entry)
        if not dst_idx:
            return
        src_t, dst_t = torch.tensor(src_idx, device=self.device), torch.tensor(dst_idx, device=self.device)
        for buf in self.core:
            flat = buf.view(-1, *buf.shape[3:])
            flat.index_copy_(0, dst_t, flat.index_select(0, src_t))

    def slot_of(self, iteration: int) -> int:
        return iteration % self.slots
