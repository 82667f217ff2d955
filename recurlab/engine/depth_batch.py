"""Depth batching: every token leaves the recurrent core at its own exit, and no row waits for the slowest.

    batcher = DepthBatcher(model, opts, capacity=32, max_len=96, stop_ids={eos})
    for ids in prompts:
        batcher.submit(ids)                       # continuous batching: submit any time
    while batcher.busy:
        for ev in batcher.step():                 # one core pass over every active token
            ev.request, ev.index, ev.token, ev.iterations, ev.logits, ev.finished
    batcher.results[i]                            # tokens, iterations and stop reason of request i

The unit of work is a token at an iteration. A pool of `capacity` decode rows holds one sequence
each, in a DepthCache (recurlab.engine.depth_cache) where each row has its own columns (twice
`capacity` rows: the spare ones take the next prefill group). Each step:

  1. admission: prefilled sequences take free decode rows; once none is left, the next group of up
     to `capacity` waiting prompts is prefilled (all columns but the last, at r, one multi-column
     pass per iteration: a stage of its own) into the cache's spare rows;
  2. prelude: the rows whose token starts this step embed it and draw its start;
  3. core: one core iteration over every active row, each at its own iteration, reading and writing
     its own iteration's cache slot;
  4. coda: the rows whose exit check is due, or which reached the last iteration, decode; the exit
     rule retires the tokens that converged. A retired row gets its next token (chosen greedily or
     sampled, or given: teacher forcing for scoring) and starts it in the next step; a finished
     sequence frees its row.

Every decision follows run_pass (recurlab.engine.cached_pass) for one row: the same checks at the same
iterations, the same exit rule, the same cache writes and exit bookkeeping (KV budget, `latest`
and `existing` lookups), random starts drawn from (seed, position), so greedy output equals decoding
each sequence alone, token for token and iteration for iteration. Sampling draws from one
generator per sequence seeded like a lone call, so it too matches decoding alone.

Each stage runs under a `torch.profiler.record_function` label (depth.prefill, depth.prelude,
depth.core, depth.coda, depth.exit_check, depth.retire): python -m recurlab.bench.depthbatch
--breakdown sums them.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.profiler import record_function

from recurlab.engine.cached_pass import position_noise
from recurlab.engine.depth_cache import DepthCache
from recurlab.engine.exits import NeedsOfCriterion, entropy, kl_div, log_softmax, relative_change
from recurlab.engine.next_token import choose
from recurlab.model import Rope
from recurlab.options.generate import ExitCriterion, GenerateOptions


@dataclass
class Retired:
    """One token that left the core: `token` is what the sequence continues with (chosen or forced)."""

    request: int
    index: int  # position among the request's generated (or scored) tokens
    token: int
    iterations: int
    logits: Tensor  # (V,) the distribution it was chosen from
    finished: bool  # the request has no more tokens to run


@dataclass
class SequenceResult:
    tokens: list[int] = field(default_factory=list)  # generated tokens, stop token excluded
    iterations: list[int] = field(default_factory=list)
    reason: str | None = None  # "stop" | "length" | "cancelled"


@dataclass
class _Request:
    ids: list[int]
    max_new: int
    forced: list[int] | None
    generator: torch.Generator | None


class RowTracker(NeedsOfCriterion):
    """ExitTracker (recurlab.engine.exits) for rows at different iterations: the same criteria,
    applied to each row's own previous check, reset when a row starts a token."""

    def __init__(self, crit: ExitCriterion, rows: int, device):
        self.crit = crit
        self.has_prev = torch.zeros(rows, dtype=torch.bool, device=device)
        self.prev_state: Tensor | None = None  # (rows, d) float
        self.prev_logp: Tensor | None = None  # (rows, V)
        self.stable = torch.zeros(rows, dtype=torch.long, device=device)
        self.cdf = torch.zeros(rows, device=device)
        self.remaining = torch.ones(rows, device=device)

    def due(self, done_iterations: int) -> bool:
        return done_iterations % self.crit.check_every == 0

    def reset(self, rows: Tensor) -> None:
        self.has_prev[rows] = False
        self.stable[rows] = 0
        self.cdf[rows] = 0
        self.remaining[rows] = 1

    def update(self, rows: Tensor, state: Tensor, logits: Tensor | None, done: Tensor, gate: Tensor | None) -> Tensor:
        """rows (n,), state (n, d), logits (n, V) or None, done (n,) iterations run, gate (n,) -> converged (n,)."""
        kind, thr = self.crit.kind, self.crit.threshold
        state = state.float()
        logp = log_softmax(logits) if logits is not None else None
        if self.prev_state is None:
            self.prev_state = torch.zeros(self.has_prev.shape[0], state.shape[-1], device=state.device)
        if logp is not None and self.prev_logp is None:
            self.prev_logp = torch.zeros(self.has_prev.shape[0], logp.shape[-1], device=state.device)
        first = ~self.has_prev[rows]
        prev_state = self.prev_state[rows]
        prev_logp = self.prev_logp[rows] if logp is not None else None
        if kind == "gate":
            lam = gate.float()
            cdf = self.cdf[rows] + lam * self.remaining[rows]
            self.remaining[rows] = self.remaining[rows] * (1 - lam)
            self.cdf[rows] = cdf
            converged = cdf >= thr
        else:
            if kind == "kl":
                cond = kl_div(prev_logp, logp) < thr
            elif kind == "kl-rev":
                cond = kl_div(logp, prev_logp) < thr
            elif kind == "entropy":
                cond = (entropy(logp) - entropy(prev_logp)).abs() < thr
            elif kind == "latent":
                cond = relative_change(state, prev_state) < thr
            elif kind == "cosine":
                cond = torch.nn.functional.cosine_similarity(state, prev_state, dim=-1) >= thr
            else:  # argmax: the same token for `threshold` successive checks
                same = logp.argmax(-1) == prev_logp.argmax(-1)
                stable = torch.where(first | ~same, torch.zeros_like(self.stable[rows]), self.stable[rows] + 1)
                self.stable[rows] = stable
                cond = stable >= int(thr)
            converged = cond & ~first
        self.prev_state[rows] = state
        if logp is not None:
            self.prev_logp[rows] = logp
        self.has_prev[rows] = True
        return converged & (done >= self.crit.min_iterations)


class DepthBatcher:
    def __init__(self, model, opts: GenerateOptions, capacity: int, max_len: int, stop_ids=()):
        """`opts` validated; `capacity` rows decode at once. The cache holds twice as many: while one
        set of rows decodes, the next group of waiting prompts is prefilled into the others, in groups
        of up to `capacity` prompts (a prefill costs r passes whatever its number of rows)."""
        self.model, self.opts = model, opts
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.capacity, self.max_len = capacity, max_len
        rows = 2 * capacity
        self.stop_ids = set(stop_ids)
        crit = opts.exit if isinstance(opts.exit, ExitCriterion) and opts.exit.enabled else None
        self.decode_r = crit.max_iterations if crit is not None and crit.max_iterations else opts.r
        self.cache = DepthCache(model.cfg, rows, max_len, opts.max_iterations, opts.kv_budget, self.device,
                                self.dtype, lookup=opts.cache_lookup)
        self.tracker = RowTracker(crit, rows, self.device) if crit is not None else None
        self.init_scale = opts.init_scale if opts.init_scale is not None else model.cfg.init_scale
        d = model.cfg.n_embd
        self.S = torch.zeros(rows, 1, d, device=self.device, dtype=self.dtype)  # each row's latent state
        self.E = torch.zeros(rows, 1, d, device=self.device, dtype=self.dtype)  # each row's prelude output
        self.requests: list[_Request] = []
        self.results: list[SequenceResult] = []
        self.waiting: deque[int] = deque()
        self.ready: deque[int] = deque()  # prefilled rows waiting for a decode slot
        self.decoding: set[int] = set()  # rows in the core passes
        self.row_req: list[int | None] = [None] * rows  # request each row serves
        self.col = [0] * rows  # column of the row's current token
        self.its = [0] * rows  # iterations its current token has run
        self.next_id = [0] * rows  # the row's current token
        self.warm = [False] * rows  # continuous: the row's state seeds its next token
        self.cancelled: set[int] = set()
        self.prefill_seconds = 0.0
        self.core_passes = 0  # core calls (each over every active row)
        self.token_iterations = 0  # core iterations summed over the tokens they ran

    # ---- requests -----------------------------------------------------------------------
    def submit(self, ids: list[int], max_new: int | None = None, forced: list[int] | None = None) -> int:
        """Queue a prompt (engine-encoded ids); `forced`: feed these tokens instead of choosing (scoring)."""
        n = len(forced) if forced is not None else (max_new or self.opts.max_new_tokens)
        if not ids:
            raise ValueError("a depth-batched request needs at least one prompt token")
        if len(ids) + n - 1 > self.max_len:
            raise ValueError(f"a request of {len(ids)} + {n} tokens exceeds the batcher's {self.max_len} columns")
        gen = None
        if self.opts.temperature > 0 and forced is None:
            gen = torch.Generator().manual_seed(self.opts.seed)  # as a lone call seeds its sampler
        self.requests.append(_Request(list(ids), n, forced, gen))
        self.results.append(SequenceResult())
        self.waiting.append(len(self.requests) - 1)
        return len(self.requests) - 1

    def cancel(self, request: int) -> None:
        """Stop a request before its next token (e.g. a stop sequence reached); its row frees."""
        self.cancelled.add(request)

    @property
    def active_rows(self) -> list[int]:
        return sorted(self.decoding)

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.ready or self.decoding)

    # ---- one step ---------------------------------------------------------------------------
    def step(self) -> list[Retired]:
        """Admit, then one core pass over every active token; returns the tokens that retired."""
        self._drop_cancelled()
        self._admit()
        rows = self.active_rows
        if not rows:
            return []
        return self._pass(rows)

    def _drop_cancelled(self) -> None:
        for b, q in enumerate(self.row_req):
            if q is not None and q in self.cancelled:
                self._free(b, "cancelled")
        if self.cancelled:
            kept = [q for q in self.waiting if q not in self.cancelled]
            for q in self.waiting:
                if q in self.cancelled:
                    self.results[q].reason = "cancelled"
            self.waiting = deque(kept)

    def _free(self, b: int, reason: str) -> None:
        q = self.row_req[b]
        res = self.results[q]
        res.reason = res.reason or reason
        self.row_req[b] = None
        self.decoding.discard(b)
        if b in self.ready:
            self.ready.remove(b)

    def _activate(self) -> None:
        while self.ready and len(self.decoding) < self.capacity:
            self.decoding.add(self.ready.popleft())

    def _admit(self) -> None:
        """Prefilled rows take free decode slots; once none is left, the next group is prefilled."""
        self._activate()
        if not self.waiting or self.ready:
            return
        free = [b for b, q in enumerate(self.row_req) if q is None]  # at least `capacity`: ready is empty
        group, rows = [], free[:min(len(self.waiting), self.capacity)]
        for b in rows:
            q = self.waiting.popleft()
            req = self.requests[q]
            self.row_req[b], self.col[b], self.its[b] = q, len(req.ids) - 1, 0
            self.next_id[b], self.warm[b] = req.ids[-1], False
            if len(req.ids) > 1:
                group.append(b)
        if group:
            t0 = time.perf_counter()
            with record_function("depth.prefill"):
                self._prefill(group)
            self._sync()
            self.prefill_seconds += time.perf_counter() - t0
        self.ready.extend(rows)
        self._activate()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ---- stages -------------------------------------------------------------------------------
    def _start(self, e: Tensor, pos: Tensor) -> Tensor:
        """The random (or zero, or embedding) start of these tokens, drawn from (seed, position) as run_pass does."""
        if self.init_scale != 0:
            return self.model.init_state(e, self.init_scale, noise=position_noise(self.opts.seed, pos, e.shape))
        return self.model.init_state(e, 0.0)

    @torch.inference_mode()
    def _prefill(self, group: list[int]) -> None:
        """Every prompt column but the last, at r, for the admitted rows together (right-padded)."""
        m, r = self.model, self.opts.r
        prompts = [self.requests[self.row_req[b]].ids[:-1] for b in group]
        T = max(len(p) for p in prompts)
        ids = torch.zeros(len(group), T, dtype=torch.long)
        for k, p in enumerate(prompts):
            ids[k, :len(p)] = torch.tensor(p)
        ids = ids.to(self.device)
        rows = torch.tensor(group, device=self.device)
        pos = self.cache.select(rows, torch.zeros(len(group), dtype=torch.long, device=self.device), T)
        self.cache.begin_tokens()
        rope = m.rope(pos)
        e = m.embed(ids, rope, self.cache)
        s = self._start(e, pos)
        for i in range(r):
            self.cache.iterations_of = torch.full((len(group),), i, dtype=torch.long, device=self.device)
            s = m.core_step(s, e, rope, self.cache, i)
        self.cache.iterations_of = None
        if r < self.cache.iterations:
            self.cache.finish([b for b in group for _ in range(T)], list(range(T)) * len(group), [r] * (len(group) * T))
        m.decode(s, rope, self.cache)  # writes the coda's entries of the prompt's columns
        if self.opts.continuous:
            last = torch.tensor([len(p) - 1 for p in prompts], device=self.device)
            self.S[rows] = s[torch.arange(len(group), device=self.device), last][:, None]
            for b in group:
                self.warm[b] = True

    def _select(self, rows: list[int]) -> tuple[Tensor, Rope]:
        rows_t = torch.tensor(rows, device=self.device)
        pos = self.cache.select(rows_t, torch.tensor([self.col[b] for b in rows], device=self.device), 1)
        return rows_t, self.model.rope(pos)

    def _narrow(self, rope: Rope, picks: list[int], n: int) -> tuple[Tensor | None, Rope]:
        """The step's selection and rotary tables restricted to `picks` (positions among its n rows)."""
        if len(picks) == n:
            self.cache.narrow(None)
            return None, rope
        pick = torch.tensor(picks, device=self.device)
        self.cache.narrow(pick)
        return pick, Rope(rope.cos[pick], rope.sin[pick], rope.style)

    @torch.inference_mode()
    def _pass(self, rows: list[int]) -> list[Retired]:
        """Prelude for the tokens that start, one core iteration for all, coda where due; retire."""
        m = self.model
        rows_t, rope = self._select(rows)
        starting = [k for k, b in enumerate(rows) if self.its[b] == 0]
        if starting:
            with record_function("depth.prelude"):
                self._prelude(rows, rows_t, rope, starting)
        with record_function("depth.core"):
            self.cache.narrow(None)
            self.cache.iterations_of = torch.tensor([self.its[b] for b in rows], device=self.device)
            s = m.core_step(self.S[rows_t], self.E[rows_t], rope, self.cache, 0)
            self.cache.iterations_of = None
            self.S[rows_t] = s
        self.core_passes += 1
        for b in rows:
            self.its[b] += 1
        self.token_iterations += len(rows)
        # checks after iteration i + 1 < r, as run_pass makes them; the last iteration always decodes
        last = [k for k, b in enumerate(rows) if self.its[b] >= self.decode_r]
        due = [k for k, b in enumerate(rows) if self.tracker is not None and self.its[b] < self.decode_r
               and self.tracker.due(self.its[b])]
        retire: list[int] = list(last)
        logits_of: dict[int, Tensor] = {}
        needs_logits = self.tracker is not None and self.tracker.needs_logits
        decode_now = sorted(set(last) | (set(due) if needs_logits else set()))
        if decode_now:
            with record_function("depth.coda"):
                self._decode(rope, len(rows), decode_now, s, logits_of)
        if due:
            with record_function("depth.exit_check"):
                exited = self._check(rows, rows_t, due, s, logits_of if needs_logits else None)
            if exited and not needs_logits:
                with record_function("depth.coda"):
                    self._decode(rope, len(rows), exited, s, logits_of)
            retire += exited
        with record_function("depth.retire"):
            return self._retire(rows, sorted(retire), logits_of)

    def _check(self, rows: list[int], rows_t: Tensor, due: list[int], s: Tensor, logits_of: dict | None) -> list[int]:
        """The exit rule on the rows whose check is due (positions in the step): those that converged."""
        pick = torch.tensor(due, device=self.device)
        logits = torch.stack([logits_of[k] for k in due]) if logits_of is not None else None
        gate = self.model.exit_lambda(s[pick, -1]) if self.tracker.needs_gate else None
        done = torch.tensor([self.its[rows[k]] for k in due], device=self.device)
        conv = self.tracker.update(rows_t[pick], s[pick, -1], logits, done, gate).tolist()
        return [k for k, c in zip(due, conv) if c]

    def _prelude(self, rows: list[int], rows_t: Tensor, rope: Rope, starting: list[int]) -> None:
        pick, sub_rope = self._narrow(rope, starting, len(rows))
        sub = rows_t if pick is None else rows_t[pick]
        self.cache.begin_tokens()
        ids = torch.tensor([self.next_id[rows[k]] for k in starting], device=self.device)[:, None]
        e = self.model.embed(ids, sub_rope, self.cache)
        self.E[sub] = e
        cold = [j for j, k in enumerate(starting) if not (self.opts.continuous and self.warm[rows[k]])]
        if cold:
            c = torch.tensor(cold, device=self.device)
            pos = torch.tensor([self.col[rows[starting[j]]] for j in cold], device=self.device)[:, None]
            self.S[sub[c]] = self._start(e[c], pos)
        if self.tracker is not None:
            self.tracker.reset(sub)

    def _decode(self, rope: Rope, n: int, picks: list[int], s: Tensor, logits_of: dict) -> None:
        pick, sub_rope = self._narrow(rope, picks, n)
        logits = self.model.decode(s if pick is None else s[pick], sub_rope, self.cache)[:, -1]
        for k, row_logits in zip(picks, logits):
            logits_of[k] = row_logits

    def _retire(self, rows: list[int], picks: list[int], logits_of: dict) -> list[Retired]:
        if not picks:
            return []
        sub = [rows[k] for k in picks]
        self.cache.finish(sub, [self.col[b] for b in sub], [self.its[b] for b in sub])
        logits = torch.stack([logits_of[k] for k in picks])
        chosen = self._choose(sub, logits)
        out = []
        for k, b in enumerate(sub):
            q = self.row_req[b]
            req, res = self.requests[q], self.results[q]
            index = len(res.iterations)
            token = req.forced[index] if req.forced is not None else chosen[k]
            its = self.its[b]
            finished = False
            if req.forced is None and token in self.stop_ids:
                res.reason, finished = "stop", True
            else:
                res.tokens.append(token)
                res.iterations.append(its)
                if len(res.tokens) >= req.max_new:
                    res.reason, finished = "length", True
            out.append(Retired(q, index, token, its, logits[k], finished))
            if finished:
                self._free(b, res.reason)
            else:
                self.next_id[b], self.col[b], self.its[b] = token, self.col[b] + 1, 0
                self.warm[b] = True
        return out

    def _choose(self, rows: list[int], logits: Tensor) -> list[int]:
        o = self.opts
        if o.temperature == 0:
            return logits.argmax(-1).tolist()
        out = []
        for b, row_logits in zip(rows, logits):
            req = self.requests[self.row_req[b]]
            if req.forced is not None:
                out.append(-1)
            else:
                out.append(int(choose(row_logits[None], o.temperature, o.top_k, o.top_p, req.generator)[0]))
        return out
