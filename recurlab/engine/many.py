"""Generation over many prompts: depth batching under an exit rule, padded batches of N at fixed r.

    res = engine.generate(prompts, GenerateOptions(r=16, exit="kl:5e-4", batch=32))   # depth batching
    res = engine.generate(prompts, GenerateOptions(r=16, batch=32))                    # padded, 32 at a time
    res.depth   # core passes, token iterations, rows: the depth scheduler's statistics

Engine.stream sends several prompts here. With depth batching (GenerateOptions.depth_batched) all
prompts go through one DepthBatcher (recurlab.engine.depth_batch) of `batch` rows: a finished
sequence frees its row for the next prompt, and every token leaves the core at its own exit.
Otherwise, with `batch` below the number of prompts, left-padded batches of `batch` prompts run one
after another through the engine's plain loop. Events carry each prompt's index as `row`.
"""

from __future__ import annotations

import time

from recurlab.engine.depth_batch import DepthBatcher
from recurlab.engine.generation import GenerationResult, TokenEvent


def depth_generate(engine, prompts: list[str], encoded: list[list[int]], opts, stopper: list | None = None):
    """A generator of TokenEvents over all prompts that returns the GenerationResult. `stopper`, if
    given, receives the batcher's `cancel` (Stream.stop_row calls it)."""
    tok = engine.tokenizer
    stop_ids = set(opts.stop_ids) if opts.stop_ids is not None else {tok.eos_id}
    max_len = max(len(x) for x in encoded) + opts.max_new_tokens
    batcher = DepthBatcher(engine.model, opts, opts.batch or len(encoded), max_len, stop_ids)
    if stopper is not None:
        stopper.append(batcher.cancel)
    texts = ["" for _ in encoded]
    t0 = time.perf_counter()
    for ids in encoded:
        batcher.submit(ids)
    while batcher.busy:
        for ev in batcher.step():
            res = batcher.results[ev.request]
            if ev.index >= len(res.tokens):  # a stop token: not part of the text
                continue
            text = tok.decode(res.tokens[:ev.index + 1])
            prev = texts[ev.request]
            piece = text[len(prev):] if text.startswith(prev) else tok.decode([ev.token])
            texts[ev.request] = text
            yield TokenEvent(ev.request, ev.index, ev.token, piece, ev.iterations)
    engine._sync()
    total = time.perf_counter() - t0
    results = batcher.results
    return GenerationResult(
        prompts=prompts, prompt_ids=encoded, generated_ids=[r.tokens for r in results], texts=texts,
        iterations=[r.iterations for r in results],
        stop_reasons=[("stop" if r.reason == "cancelled" else r.reason) or "length" for r in results],
        prefill_seconds=batcher.prefill_seconds, decode_seconds=total - batcher.prefill_seconds,
        cache_bytes=batcher.cache.memory_bytes(), options=opts.to_dict(),
        depth={"rows": batcher.capacity, "core_passes": batcher.core_passes,
               "token_iterations": batcher.token_iterations,
               "rows_per_pass": batcher.token_iterations / batcher.core_passes if batcher.core_passes else 0.0},
    )


def padded_batches(engine, prompts: list[str], encoded: list[list[int]], opts):
    """Left-padded batches of `opts.batch` prompts, one after another; one merged GenerationResult."""
    parts = []
    for lo in range(0, len(encoded), opts.batch):
        stream = engine._generate(prompts[lo:lo + opts.batch], encoded[lo:lo + opts.batch], opts)
        while True:
            try:
                ev = next(stream)
            except StopIteration as done:
                parts.append(done.value)
                break
            yield TokenEvent(ev.row + lo, ev.index, ev.token_id, ev.text, ev.iterations)
    first = parts[0]
    return GenerationResult(
        prompts=prompts, prompt_ids=encoded, generated_ids=[g for p in parts for g in p.generated_ids],
        texts=[t for p in parts for t in p.texts], iterations=[i for p in parts for i in p.iterations],
        stop_reasons=[s for p in parts for s in p.stop_reasons],
        prefill_seconds=sum(p.prefill_seconds for p in parts), decode_seconds=sum(p.decode_seconds for p in parts),
        cache_bytes=max(p.cache_bytes for p in parts), options=first.options,
        compile_seconds=sum(p.compile_seconds for p in parts),
    )
