"""The parallel (diffusion-style) sampler of Geiping et al. 2025 (arXiv 2510.14961), batched.

    from recurlab.engine import Engine, GenerateOptions
    opts = GenerateOptions(r=8, sampler="parallel:inner=2,freeze=latent:0.03")
    res = engine.generate(["3102.0213=", "12.31="], opts, on_step=print)   # StepEvent per outer step
    res.parallel["passes_per_token"], res.parallel["rows"][0]["frozen_at"]

After a prefill of the prompt at r (as in sequential decoding), each prompt row keeps a wavefront of
positions whose cache entries are not final. One outer step: recompute the wavefront's embeddings
(smoothed with the previous ones), mix damped noise into the states, run `inner` core iterations
over every wavefront position of every row in one batched pass, decode them all, let each position's
prediction become its successor's token, freeze the longest prefix that passes the freeze rule
(its tokens are committed and its cache entries stay), and append `headway` positions. A position
never runs more than r iterations; reaching r freezes it once its token agrees with its
predecessor's prediction. Rows have their own wavefront, freezing, random generators and stop, so
each row's output is that prompt's output alone.

The positions of one pass sit at different iterations, so the cache here (WavefrontCache) takes a
column and a slot per position: `kv=aligned` gives iteration i its own slot and a position at
iteration i reads the others' iteration-i entries (sequential decoding's rule, which makes the
strict `iterations` freeze rule exact); `kv=latest` keeps one slot per layer and every position
reads the latest entry of the others (the reference's compressed cache).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from recurlab.engine.next_token import next_token_probs
from recurlab.options.generate import GenerateOptions
from recurlab.options.parallel import ParallelConfig


@dataclass
class StepEvent:
    """One outer step of one row: the wavefront after its iterations, before the freeze."""

    row: int
    step: int  # 1-based outer step
    first: int  # generated-token index of the wavefront's first position
    iterations: list[int]  # per wavefront position: iterations had so far
    tokens: list[int]  # per wavefront position: the token it now predicts
    frozen: int  # how many of these positions froze at this step


class WavefrontCache:
    """KV cache whose pass covers given columns per row, each core write going to its own slot.

    Buffers are [slot, k|v, B, H, T+1, D]; column T and core slot `slots` are scratch, written by
    padding positions and by positions that sit out an iteration, and never read by a real one.
    """

    def __init__(self, cfg, batch: int, max_len: int, slots: int, device, dtype):
        shape = (2, batch, cfg.kv_heads, max_len + 1, cfg.head_dim)  # grouped-query: n_kv_head heads
        self.group = cfg.n_head // cfg.kv_heads
        self.prelude = [torch.zeros((1, *shape), device=device, dtype=dtype) for _ in range(cfg.n_prelude)]
        self.core = [torch.zeros((slots + 1, *shape), device=device, dtype=dtype) for _ in range(cfg.n_core_layers)]
        self.coda = [torch.zeros((1, *shape), device=device, dtype=dtype) for _ in range(cfg.n_coda)]
        self.slots, self.trash_col = slots, max_len
        self.rows = torch.arange(batch, device=device)[:, None]
        self.cols = self.slot = self.mask = None
        self.length = 0

    def memory_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.prelude + self.core + self.coda)

    def begin(self, cols: Tensor, real: Tensor, in_step: bool = False) -> None:
        """cols (B, W): the pass's columns (scratch where `real` is False). `in_step`: every position
        runs the same iteration (the prefill), so attention needs no gather. The choice never
        depends on the other rows of a batch, whose rounding would then differ from a row alone."""
        self.gather = self.slots > 1 and not in_step
        self.cols = torch.where(real, cols, self.trash_col)
        self.length = int(cols.masked_fill(~real, -1).max()) + 1
        k = torch.arange(self.length, device=cols.device)
        self.mask = (k[None, None, :] <= self.cols[:, :, None])[:, None]  # (B, 1, W, L)
        self.slot = torch.zeros_like(cols)

    def set_slots(self, slot: Tensor, active: Tensor) -> None:
        """Core slot per position for the next core step; inactive positions write the scratch slot."""
        self.slot = torch.where(active, slot, self.slots)
        self.read_slot = slot

    def takes_column(self) -> bool:
        return False  # a wavefront pass always goes through `attend` (per-position slots and scratch columns)

    def attend(self, layer_key: tuple, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        kind = layer_key[0]
        if kind == "core":
            buf, write, read = self.core[layer_key[2]], self.slot, self.read_slot
        else:
            buf = (self.prelude if kind == "prelude" else self.coda)[layer_key[1]]
            write = read = torch.zeros_like(self.cols)
        B = q.shape[0]
        rows = self.rows[:B].expand_as(self.cols)
        buf[write, :, rows, :, self.cols, :] = torch.stack((k, v), dim=2).to(buf.dtype)  # (B, W, 2, H, D)
        L = self.length
        qh = q.transpose(1, 2)  # (B, H, W, D)
        if kind != "core" or not self.gather:
            s = int(read.view(-1)[0])
            keys, values = buf[s, 0, :B, :, :L], buf[s, 1, :B, :, :L]
            return F.scaled_dot_product_attention(qh, keys.to(q.dtype), values.to(q.dtype), attn_mask=self.mask,
                                                  enable_gqa=self.group > 1)
        # positions at different iterations read different slots: gather (B, W, 2, H, L, D)
        kv = buf[read, :, rows, :, :L, :].to(q.dtype)
        if self.group > 1:  # query head i reads key/value head i // group
            kv = kv.repeat_interleave(self.group, dim=3)
        scores = torch.einsum("bwhd,bwhld->bhwl", q, kv[:, :, 0]) / math.sqrt(q.shape[-1])
        probs = scores.masked_fill(~self.mask, float("-inf")).softmax(-1)
        return torch.einsum("bhwl,bwhld->bhwd", probs, kv[:, :, 1])

    def spread(self, b: int, col: int, used: int) -> None:
        """A position frozen after `used` iterations: its last entry answers later iterations too."""
        if used < self.slots:
            for buf in self.core:
                buf[used:self.slots, :, b, :, col] = buf[used - 1, :, b, :, col]


@dataclass
class _Row:
    """One prompt's wavefront: positions lo .. lo + len(tokens) - 1 (sequence columns)."""

    lo: int  # first unfrozen column
    base: int  # the prompt's last column: its prediction is generated token 0
    end: int  # last column whose prediction is needed
    gen: torch.Generator  # the row's sampling uniforms
    tokens: list  # input token per position
    states: Tensor  # (w, d)
    embeds: Tensor | None  # (w, d) previous smoothed embeddings, rows beyond it are new
    prev: Tensor | None  # (w, d) states after the previous outer step (latent rule)
    n: list  # iterations per position
    stable: list  # outer steps the position's prediction has been unchanged
    last_pred: list  # previous prediction per position (-1: none)
    u: list  # uniform draw per position for sampling (inverse CDF)
    last_state: Tensor  # (d,) state of the last frozen column (continuous warm start)
    next_token: int  # prediction of the last frozen column
    done: bool = False
    steps: int = 0
    passes: int = 0
    frozen_at: list | None = None
    record: list | None = None  # StepEvent fields per outer step (the saved wavefront)
    committed: list | None = None  # (token, iterations) per frozen position, a stop token included

    @property
    def width(self) -> int:
        return len(self.tokens)


def _pick(logits: Tensor, opts: GenerateOptions, u: Tensor | None) -> Tensor:
    """Greedy argmax, or inverse-CDF sampling with a fixed uniform per position, so that a
    position's token changes only when its distribution does."""
    if opts.temperature == 0:
        return logits.argmax(-1)
    probs = next_token_probs(logits, opts.temperature, opts.top_k, opts.top_p)
    idx = torch.searchsorted(probs.cumsum(-1), u[:, None].to(probs.dtype)).squeeze(-1)
    return idx.clamp_max(probs.shape[-1] - 1)


class _Wavefronts:
    """One parallel generation's model, cache and random state, and the batched passes over them."""

    def __init__(self, engine, encoded: list[list[int]], opts: GenerateOptions):
        self.model, self.device, self.dtype, self.opts = engine.model, engine.device, engine.dtype, opts
        self.cfg, self.r, self.encoded = opts.sampler, opts.r, encoded
        self.cap = self.cfg.freeze_iterations(self.r)
        self.inner = self.cfg.inner_for(self.r)
        self.lens = [len(x) for x in encoded]
        self.slots = self.cap if self.cfg.kv == "aligned" else 1
        mcfg = self.model.cfg
        self.cache = WavefrontCache(mcfg, len(encoded), max(self.lens) - 1 + opts.max_new_tokens, self.slots,
                                    self.device, self.dtype)
        self.init_scale = opts.init_scale if opts.init_scale is not None else mcfg.init_scale
        self.gens = [torch.Generator(device=self.device).manual_seed(opts.seed) for _ in encoded]
        self.d = mcfg.n_embd
        self.embedding_start = mcfg.state_init == "embedding"  # Ouro: the loop starts at the embedding
        self.passes = self.col_iters = 0

    def fresh(self, b: int, n: int) -> Tensor:
        """n random starts for row b, drawn from the row's own generator."""
        zeros = torch.zeros(1, n, self.d, device=self.device, dtype=self.dtype)
        return self.model.init_state(zeros, self.init_scale, self.gens[b])[0]

    def _pack(self, seqs, fill) -> Tensor:
        W = max(len(s) for s in seqs)
        return torch.tensor([list(s) + [fill] * (W - len(s)) for s in seqs], device=self.device)

    def prefill(self) -> list[Tensor]:
        """The prompts' columns but the last, r iterations, every column in step; -> each row's last state."""
        model, cache, device, d = self.model, self.cache, self.device, self.d
        B = len(self.encoded)
        pre = [x[:-1] for x in self.encoded]
        last_states = [torch.zeros(d, device=device, dtype=self.dtype) for _ in range(B)]
        if max(self.lens) <= 1:
            return last_states
        ids = self._pack([p or [0] for p in pre], 0)
        real = self._pack([[True] * len(p) for p in pre], False)
        cols = torch.arange(ids.shape[1], device=device).expand_as(ids)
        cache.begin(cols, real, in_step=True)
        rope = model.rope(cache.cols)
        e = model.embed(ids, rope, cache)
        # each row draws its own start, as much as it would alone
        s = torch.zeros(B, ids.shape[1], d, device=device, dtype=self.dtype)
        for b in range(B):
            if pre[b]:
                s[b, :len(pre[b])] = self.fresh(b, len(pre[b]))
        if self.embedding_start:
            s = e.clone()
        for i in range(self.r):
            cache.set_slots(torch.full_like(cols, min(i, self.slots - 1)), real)
            s = model.core_step(s, e, rope, cache, i)
        model.decode(s, rope, cache)
        for b in range(B):
            if len(pre[b]):
                last_states[b] = s[b, len(pre[b]) - 1]
                for c in range(len(pre[b])):
                    cache.spread(b, c, self.r)
        return last_states

    def start_rows(self, last_states: list[Tensor]) -> list[_Row]:
        """Each prompt's wavefront: one position, the prompt's last token."""
        opts, device, rows = self.opts, self.device, []
        for b, x in enumerate(self.encoded):
            init = last_states[b][None].clone() if opts.continuous else self.fresh(b, 1)
            # sampling draws from its own generator, so that states and noise match a greedy run
            ugen = torch.Generator(device=device).manual_seed(opts.seed)
            u = [float(torch.rand((), generator=ugen, device=device))] if opts.temperature > 0 else [0.0]
            lo = self.lens[b] - 1
            rows.append(_Row(lo=lo, base=lo, end=lo - 1 + opts.max_new_tokens, gen=ugen, tokens=[x[-1]],
                             states=init, embeds=None, prev=None, n=[0], stable=[0], last_pred=[-1], u=u,
                             last_state=last_states[b], next_token=x[-1], frozen_at=[], record=[], committed=[]))
        return rows

    def outer_step(self, rows: list[_Row], step: int, rows_out, on_step) -> list:
        """One outer step over every live row: embed, noise, `inner` core iterations, decode, then each
        row's freeze and append (`_advance`); -> the TokenEvents of the tokens it committed."""
        model, cache, cfg, device, d = self.model, self.cache, self.cfg, self.device, self.d
        B = len(rows)
        live = [b for b, row in enumerate(rows) if not row.done]
        W = max(rows[b].width for b in live)
        ids = torch.zeros(B, W, dtype=torch.long, device=device)
        cols = torch.zeros(B, W, dtype=torch.long, device=device)
        real = torch.zeros(B, W, dtype=torch.bool, device=device)
        s = torch.zeros(B, W, d, device=device, dtype=self.dtype)
        n = torch.zeros(B, W, dtype=torch.long, device=device)
        for b in live:
            row, w = rows[b], rows[b].width
            ids[b, :w] = torch.tensor(row.tokens, device=device)
            cols[b, :w] = torch.arange(row.lo, row.lo + w, device=device)
            real[b, :w] = True
            s[b, :w] = row.states
            n[b, :w] = torch.tensor(row.n, device=device)
        cache.begin(cols, real)
        rope = model.rope(cache.cols)
        e = self._smoothed_embeddings(rows, live, model.embed(ids, rope, cache))
        if self.embedding_start:  # a position that has not iterated yet starts at its embedding
            s = torch.where((real & (n == 0))[..., None], e, s)
        if cfg.noise > 0 and not self.embedding_start:  # the noise is a random start's; an embedding start has none
            for b in live:
                w = rows[b].width
                beta = cfg.noise / (1 + n[b, :w].to(s.dtype)) if cfg.damped else torch.full((w,), cfg.noise, dtype=s.dtype, device=device)
                beta = beta * (n[b, :w] < self.cap)  # a position done iterating keeps its state
                rand = self.fresh(b, w)
                s[b, :w] = s[b, :w] * (1 - beta[:, None]) + beta[:, None] * rand
        for _ in range(self.inner):
            active = real & (n < self.cap)
            if not bool(active.any()):
                break
            slot = n.clamp_max(self.slots - 1) if self.slots > 1 else torch.zeros_like(n)
            cache.set_slots(slot, active)
            s = torch.where(active[..., None], model.core_step(s, e, rope, cache, 0), s)
            n = n + active.long()
            self.passes += 1
            self.col_iters += int(active.sum())
            row_active = active.any(1)
            for b in live:
                rows[b].passes += int(row_active[b])
        logits = model.decode(s, rope, cache)
        events = []
        for b in live:
            events += _advance(rows[b], b, step, s[b], logits[b], n[b], self.opts, cfg, self.cap, cache, rows_out,
                               on_step, self.fresh, device)
        return events

    def _smoothed_embeddings(self, rows: list[_Row], live: list[int], e_new: Tensor) -> Tensor:
        """The wavefront's new embeddings mixed with the previous outer step's (cfg.smoothing)."""
        e = e_new.clone()
        for b in live:
            old = rows[b].embeds
            if self.cfg.smoothing > 0 and old is not None and len(old):
                k = len(old)
                # new + a (old - new) is exactly new when nothing changed
                e[b, :k] = e_new[b, :k] + self.cfg.smoothing * (old - e_new[b, :k])
            rows[b].embeds = e[b, :rows[b].width].clone()
        return e

    def stats(self, rows: list[_Row], steps: int, produced: list[int]) -> dict:
        """What the result's `.parallel` reports: passes, per-row freezing and the recorded wavefronts."""
        r, prefilled = self.r, max(self.lens) > 1
        out = {
            "config": self.cfg.to_dict(), "r": r, "cap": self.cap, "inner": self.inner,
            "outer_steps": steps, "prefill_core_passes": r if prefilled else 0, "decode_core_passes": self.passes,
            "core_passes": self.passes + (r if prefilled else 0), "column_iterations": self.col_iters,
            # per row: the passes in which it had a position iterating, over the tokens it produced
            # (a stop token counts: it cost the same); sequential decoding spends r per token
            "passes_per_token": sum(row.passes for row in rows) / max(sum(produced), 1),
            "sequential_passes_per_token": r,
            "rows": [{"outer_steps": row.steps, "core_passes": row.passes, "tokens": produced[b],
                      "passes_per_token": row.passes / max(produced[b], 1), "frozen_at": row.frozen_at,
                      "token_ids": [c[0] for c in row.committed], "iterations": [c[1] for c in row.committed],
                      "wavefront": row.record}
                     for b, row in enumerate(rows)],
        }
        out["speedup_in_passes"] = r / out["passes_per_token"] if out["passes_per_token"] else 0.0
        return out


def parallel_generate(engine, prompts, encoded, opts: GenerateOptions, rows_out, on_step=None):
    """Generator of TokenEvents; returns (prefill_seconds, decode_seconds, cache_bytes, stats)."""
    waves = _Wavefronts(engine, encoded, opts)
    t0 = time.perf_counter()
    with torch.inference_mode():
        rows = waves.start_rows(waves.prefill())
    t1 = time.perf_counter()
    step = 0
    while not all(row.done for row in rows) and step < opts.sampler.max_steps:
        step += 1
        with torch.inference_mode():
            events = waves.outer_step(rows, step, rows_out, on_step)
        # yielded outside inference mode, which would otherwise leak into the consumer's thread
        yield from events
    t2 = time.perf_counter()
    for b, row in enumerate(rows):
        if not row.done and rows_out.reasons[b] is None:
            rows_out.reasons[b] = "steps"
    produced = [len(rows_out.ids[b]) + (rows_out.reasons[b] == "stop") for b in range(len(rows))]
    return t1 - t0, t2 - t1, waves.cache.memory_bytes(), waves.stats(rows, step, produced)


def _advance(row: _Row, b: int, step: int, s: Tensor, logits: Tensor, n: Tensor, opts, cfg: ParallelConfig, cap: int,
             cache: WavefrontCache, rows_out, on_step, fresh, device) -> list:
    """One row after an outer step's iterations: predictions, freeze, commit, restarts, append.
    Returns the TokenEvents of the committed tokens."""
    w = row.width
    s, n_list = s[:w], n[:w].tolist()
    u = torch.tensor(row.u, device=device) if opts.temperature > 0 else None
    preds = _pick(logits[:w], opts, u).tolist()
    for i in range(w):
        row.stable[i] = row.stable[i] + 1 if preds[i] == row.last_pred[i] else 0
        row.last_pred[i] = preds[i]
    if cfg.freeze == "latent":
        change = torch.full((w,), float("inf"), device=device)
        if row.prev is not None and len(row.prev):
            k = len(row.prev)
            change[:k] = (s[:k] - row.prev).float().norm(dim=-1) / s[:k].float().norm(dim=-1).clamp_min(1e-12)
        passed = (change < cfg.threshold).tolist()
    elif cfg.freeze == "stable":
        passed = [st >= cfg.threshold for st in row.stable]
    else:
        passed = [False] * w
    k = 0  # the frozen prefix
    while k < w:
        agrees = k == 0 or row.tokens[k] == preds[k - 1]
        if not (agrees and (passed[k] or n_list[k] >= cap)):
            break
        k += 1
    row.steps = step
    events = []
    for i in range(k):
        cache.spread(b, row.lo + i, n_list[i])
        row.frozen_at.append(step)
        row.committed.append((preds[i], n_list[i]))
        ev = rows_out.add(b, preds[i], n_list[i])
        if ev is not None:
            events.append(ev)
        if rows_out.finished(b):
            # a stop token or the last wanted token ends the row: the positions after it in the
            # passing prefix are never committed, so they do not count as frozen
            row.done = True
            k = i + 1
            break
    event = StepEvent(row=b, step=step, first=row.lo - row.base, iterations=n_list, tokens=preds, frozen=k)
    row.record.append({"step": step, "first": event.first, "iterations": n_list, "tokens": preds, "frozen": k})
    if on_step is not None:
        on_step(event)
    if row.done:
        return events
    if k:
        row.last_state = s[k - 1].clone()
        row.next_token = preds[k - 1]
    keep = slice(k, w)
    row.tokens, row.n, row.stable = row.tokens[keep], n_list[keep], row.stable[keep]
    row.last_pred, row.u = row.last_pred[keep], row.u[keep]
    row.states = s[keep].clone()
    row.embeds = row.embeds[keep] if row.embeds is not None else None
    row.prev = s[keep].clone()
    row.lo += k
    # each position now takes its predecessor's prediction; a changed token means new context
    preds = preds[k:]
    for i in range(row.width):
        want = row.next_token if i == 0 else preds[i - 1]
        if row.tokens[i] == want:
            continue
        row.tokens[i] = want
        if cfg.strict:  # restart this position and all later ones: exactness needs a clean history
            m = row.width - i
            row.states[i:] = fresh(b, m)
            row.n[i:] = [0] * m
            row.embeds = row.embeds[:i]
            row.prev = row.prev[:i]
            break
        row.n[i] = 0
    # append headway positions
    room = min(cfg.headway, cfg.wavefront - row.width, row.end - (row.lo + row.width) + 1)
    for _ in range(max(room, 0)):
        guess = preds[-1] if preds else row.next_token
        start = (row.states[-1] if row.width else row.last_state).clone() if opts.continuous else fresh(b, 1)[0]
        row.tokens.append(guess)
        row.states = torch.cat([row.states, start[None]])
        row.n.append(0)
        row.stable.append(0)
        row.last_pred.append(-1)
        row.u.append(float(torch.rand((), generator=row.gen, device=device)) if opts.temperature > 0 else 0.0)
    return events
