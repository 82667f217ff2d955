"""Generation with a KV cache: plain, adaptive-exit, continuous and self-speculative decoding.

    engine = Engine(model, tokenizer, device="cpu")
    res = engine.generate(["12+34=", "7+8="], GenerateOptions(r=16, exit="kl:5e-4"))
    for ev in (stream := engine.stream("12+34=", GenerateOptions(r=8))):
        print(ev.text, end="")
    stream.result.tokens_per_s

The prompt's columns except the last are prefilled at r in one pass per iteration; every
generated token then costs one single-column pass (r core iterations, fewer with an exit).
Several prompts are left-padded into one batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from recurlab.devices import check_device
from recurlab.engine.cache import KVCache
from recurlab.engine.cached_pass import run_pass
from recurlab.engine.compiled import CompiledCore, padded_length
from recurlab.engine.exits import check_exit_support
from recurlab.engine.generation import GenerationResult, TokenEvent
from recurlab.engine.many import depth_generate, padded_batches
from recurlab.engine.next_token import choose, next_token_probs
from recurlab.engine.parallel_sampler import parallel_generate
from recurlab.errors import InferenceError
from recurlab.options.generate import GenerateOptions
from recurlab.text.specials import sequence_specials


class Stream:
    """Iterate for TokenEvents; `result` holds the GenerationResult once the iteration ends."""

    def __init__(self, events: Iterator[TokenEvent], stopper: list | None = None):
        self._events = events
        self._stopper = stopper if stopper is not None else []
        self.result: GenerationResult | None = None

    def __iter__(self) -> Iterator[TokenEvent]:
        self.result = yield from self._events

    def stop_row(self, row: int) -> None:
        """Generate no more for this prompt (e.g. it reached a stop sequence): under depth batching its
        row goes to the next prompt; other loops keep stepping it until the batch ends."""
        for stop in self._stopper:
            stop(row)


@dataclass
class _Rows:
    """Per-row output bookkeeping shared by the plain and the speculative loop."""

    tokenizer: object
    stop_ids: set
    max_new: int
    ids: list[list[int]] = field(default_factory=list)
    iters: list[list[int]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    reasons: list[str | None] = field(default_factory=list)

    def start(self, n: int) -> None:
        self.ids = [[] for _ in range(n)]
        self.iters = [[] for _ in range(n)]
        self.texts = ["" for _ in range(n)]
        self.reasons = [None] * n

    def add(self, row: int, token: int, iterations: int) -> TokenEvent | None:
        """Record a token; None when it is a stop token. Sets the row's stop reason when done."""
        if token in self.stop_ids:
            self.reasons[row] = "stop"
            return None
        self.ids[row].append(token)
        self.iters[row].append(iterations)
        text = self.tokenizer.decode(self.ids[row])
        piece = text[len(self.texts[row]):] if text.startswith(self.texts[row]) else self.tokenizer.decode([token])
        self.texts[row] = text
        if len(self.ids[row]) >= self.max_new:
            self.reasons[row] = "length"
        return TokenEvent(row, len(self.ids[row]) - 1, token, piece, iterations)

    def finished(self, row: int) -> bool:
        return self.reasons[row] is not None


class Engine:
    def __init__(self, model, tokenizer, device: str = "cpu"):
        check_device(str(device))
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.dtype = next(model.parameters()).dtype
        self._compiled: CompiledCore | None = None  # built on the first `compile` request, kept for later calls

    # ---- public ----------------------------------------------------------------------
    def encode(self, prompt: str) -> list[int]:
        if not isinstance(prompt, str) or prompt == "":
            raise InferenceError("the prompt is empty; pass some text, e.g. --prompt '12+34='")
        ids = self.tokenizer.encode(prompt)
        # the model's own convention: <bos> for task models, a model folder's specials (e.g. Llama's <s>);
        # a prompt that already starts with them (typed by hand) does not get them twice, as in lm-eval
        before, after = sequence_specials(self.tokenizer)
        if before and list(ids[:len(before)]) == before:
            before = []
        ids = [*before, *ids, *after]
        if not ids:
            raise InferenceError(f"the prompt {prompt!r} encodes to no tokens; pass some text the model knows")
        context = self.model.cfg.block_size
        if len(ids) > context:  # positions past the context were never trained: refuse, do not guess
            raise InferenceError(f"the prompt is {len(ids)} tokens, longer than the model's context of {context} "
                                 "(model.block_size); shorten it")
        return list(ids)

    def stream(self, prompts: str | Sequence[str], options: GenerateOptions | None = None, on_step=None) -> Stream:
        """`on_step(StepEvent)` is called after every outer step of the parallel sampler."""
        opts = options if options is not None else GenerateOptions()
        prompt_list = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompt_list:
            raise InferenceError("no prompt given; pass at least one")
        opts.validate()
        check_exit_support(self.model, opts.exit)
        encoded = [self.encode(p) for p in prompt_list]  # errors surface here, before any iteration
        if opts.speculative is not None and len(encoded) > 1:
            raise InferenceError("speculative decoding takes one prompt at a time; drop --speculative for a batch")
        if opts.sampler is not None:
            return Stream(self._parallel(prompt_list, encoded, opts, on_step))
        if opts.depth_batched(len(encoded)):
            stopper: list = []
            return Stream(depth_generate(self, prompt_list, encoded, opts, stopper), stopper)
        if opts.batch is not None and opts.batch < len(encoded):
            return Stream(padded_batches(self, prompt_list, encoded, opts))
        return Stream(self._generate(prompt_list, encoded, opts))

    def generate(
        self,
        prompts: str | Sequence[str],
        options: GenerateOptions | None = None,
        on_token: Callable[[TokenEvent], None] | None = None,
        on_step=None,
    ) -> GenerationResult:
        stream = self.stream(prompts, options, on_step)
        for ev in stream:
            if on_token is not None:
                on_token(ev)
        return stream.result

    # ---- internals ---------------------------------------------------------------------
    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _generate(self, prompts: list[str], encoded: list[list[int]], opts: GenerateOptions):
        tok = self.tokenizer
        B, Tp = len(encoded), max(len(x) for x in encoded)
        pad = getattr(tok, "pad_id", None) or 0
        ids = torch.full((B, Tp), pad, dtype=torch.long)
        for b, x in enumerate(encoded):
            ids[b, Tp - len(x):] = torch.tensor(x)
        ids = ids.to(self.device)
        start = torch.tensor([Tp - len(x) for x in encoded], dtype=torch.long)
        max_len = Tp + opts.max_new_tokens
        if opts.compile:
            self._compiled = self._compiled or CompiledCore(self.model)
            max_len = padded_length(max_len)  # the compiled graph's shapes include the cache length
        cache = KVCache(self.model.cfg, B, max_len, opts.max_iterations, opts.kv_budget,
                        self.device, self.dtype, start, lookup=opts.cache_lookup)
        init_scale = opts.init_scale if opts.init_scale is not None else self.model.cfg.init_scale
        gen_sample = torch.Generator().manual_seed(opts.seed)
        stop_ids = set(opts.stop_ids) if opts.stop_ids is not None else {tok.eos_id}
        rows = _Rows(tok, stop_ids, opts.max_new_tokens)
        rows.start(B)
        # random starts seeded by (seed, position): plain and speculative decoding give each token
        # the same start, so greedy speculative output equals plain greedy at any init scale
        common = dict(init_scale=init_scale, start_seed=opts.seed, compiled=self._compiled if opts.compile else None)

        compiled_before = self._compiled.compile_seconds if self._compiled is not None else 0.0
        t0 = time.perf_counter()
        # run_pass enters inference mode itself: holding it here would leak it, through the yields,
        # into the consumer's thread between tokens
        prev_state = None
        if Tp > 1:
            prev_state = run_pass(self.model, cache, ids[:, :-1], opts.r, **common).state[:, -1:]
        self._sync()
        t1 = time.perf_counter()
        loop = self._speculative if opts.speculative is not None else self._plain
        spec = yield from loop(cache, ids[:, -1:], prev_state, opts, rows, gen_sample, common)
        self._sync()
        t2 = time.perf_counter()
        return GenerationResult(
            prompts=prompts, prompt_ids=encoded, generated_ids=rows.ids, texts=rows.texts, iterations=rows.iters,
            stop_reasons=[r or "length" for r in rows.reasons], prefill_seconds=t1 - t0, decode_seconds=t2 - t1,
            cache_bytes=cache.memory_bytes(), options=opts.to_dict(), speculative=spec,
            compile_seconds=(self._compiled.compile_seconds - compiled_before) if self._compiled is not None else 0.0,
        )

    def _parallel(self, prompts: list[str], encoded: list[list[int]], opts: GenerateOptions, on_step):
        stop_ids = set(opts.stop_ids) if opts.stop_ids is not None else {self.tokenizer.eos_id}
        rows = _Rows(self.tokenizer, stop_ids, opts.max_new_tokens)
        rows.start(len(encoded))
        prefill_s, decode_s, cache_bytes, stats = yield from parallel_generate(self, prompts, encoded, opts, rows, on_step)
        return GenerationResult(
            prompts=prompts, prompt_ids=encoded, generated_ids=rows.ids, texts=rows.texts, iterations=rows.iters,
            stop_reasons=[r or "length" for r in rows.reasons], prefill_seconds=prefill_s, decode_seconds=decode_s,
            cache_bytes=cache_bytes, options=opts.to_dict(), parallel=stats,
        )

    def _plain(self, cache, pending, prev_state, opts: GenerateOptions, rows: _Rows, gen_sample, common):
        B = pending.shape[0]
        decode_r = opts.exit.max_iterations if opts.exit is not None and opts.exit.max_iterations else opts.r
        finished = torch.zeros(B, dtype=torch.bool, device=self.device)
        while True:
            s0 = prev_state if opts.continuous else None
            out = run_pass(self.model, cache, pending, decode_r, s0=s0, exit=opts.exit, skip=finished, **common)
            nxt = choose(out.logits[:, -1], opts.temperature, opts.top_k, opts.top_p, gen_sample)
            its = out.iterations.tolist()
            for b, token in enumerate(nxt.tolist()):
                if rows.finished(b):
                    continue
                ev = rows.add(b, token, its[b])
                if ev is not None:
                    yield ev
            if all(rows.finished(b) for b in range(B)):
                return None
            finished = torch.tensor([rows.finished(b) for b in range(B)], device=self.device)
            pending = nxt[:, None]
            prev_state = out.state

    def _speculative(self, cache, pending, prev_state, opts: GenerateOptions, rows: _Rows, gen_sample, common):
        """Draft with few iterations, verify at r in one pass, keep the agreeing prefix plus one token.
        Greedy: accept while the draft equals the verifier's argmax. Sampling: the standard
        rejection rule (accept with min(1, p/q), else resample from max(p - q, 0)), which keeps
        the verifier's distribution."""
        spec = opts.speculative
        greedy = opts.temperature == 0
        drafted = accepted = rounds = 0
        while True:
            remaining = opts.max_new_tokens - len(rows.ids[0])
            base = cache.length
            drafts, q_probs = [], []
            tok = pending
            for _ in range(min(spec.lookahead, remaining - 1)):
                logits = run_pass(self.model, cache, tok, spec.draft, **common).logits[:, -1]
                if greedy:
                    y = logits.argmax(-1)
                else:
                    q = next_token_probs(logits, opts.temperature, opts.top_k, opts.top_p)
                    y = torch.multinomial(q.cpu(), 1, generator=gen_sample).squeeze(-1).to(self.device)
                    q_probs.append(q[0])
                drafts.append(int(y))
                tok = y[:, None]
            cache.truncate(base)
            verify = torch.tensor([[int(pending[0, 0])] + drafts], device=self.device)
            logits = run_pass(self.model, cache, verify, opts.r, **common).logits[0]
            new = self._accept(drafts, q_probs, logits, opts, gen_sample)
            rounds += 1
            drafted += len(drafts)
            accepted += len(new) - 1
            cache.truncate(base + len(new))  # pending + the accepted drafts were verified at r
            for token in new:
                ev = rows.add(0, token, opts.r)
                if ev is not None:
                    yield ev
                if rows.finished(0):
                    # sequential core iterations: plain decoding runs r per token; a round runs
                    # `draft` per drafted token, then one r-deep verify pass over all of them
                    serial = drafted * spec.draft + rounds * opts.r
                    produced = len(rows.ids[0]) + (rows.reasons[0] == "stop")
                    return {"draft": spec.draft, "lookahead": spec.lookahead, "rounds": rounds, "drafted": drafted,
                            "accepted": accepted, "acceptance_rate": accepted / drafted if drafted else 0.0,
                            "serial_iteration_speedup": produced * opts.r / serial}
            pending = torch.tensor([[new[-1]]], device=self.device)

    def _accept(self, drafts: list[int], q_probs: list, logits, opts: GenerateOptions, gen_sample) -> list[int]:
        """Tokens to keep: the agreeing prefix of `drafts` plus one from the verifier."""
        if opts.temperature == 0:
            target = logits.argmax(-1).tolist()
            m = 0
            while m < len(drafts) and drafts[m] == target[m]:
                m += 1
            return drafts[:m] + [target[m]]
        p_all = next_token_probs(logits, opts.temperature, opts.top_k, opts.top_p).cpu()
        out = []
        for k, y in enumerate(drafts):
            p, q = p_all[k], q_probs[k].cpu()
            u = torch.rand((), generator=gen_sample)
            if float(u) * float(q[y]) <= float(p[y]):
                out.append(y)
                continue
            residual = (p - q).clamp_min(0)
            residual = residual / residual.sum() if float(residual.sum()) > 0 else p
            out.append(int(torch.multinomial(residual, 1, generator=gen_sample)))
            return out
        out.append(int(torch.multinomial(p_all[len(drafts)], 1, generator=gen_sample)))
        return out
