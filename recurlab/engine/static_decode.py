"""Greedy decoding with static shapes, optionally captured as one CUDA graph per token: the
baseline that benchmarks time the engine's decoding against (not part of recurlab.engine's API;
the engine's own fast path is GenerateOptions(compile=True), recurlab.engine.compiled).

    dec = StaticDecoder(model, max_len=256, r=16, mode="graph")   # "eager" | "graph" | "compile"
    ids = dec.generate(prompt_ids, n_new=64)                       # list[int], greedy, zero start

Each token is one call of `step`: prelude, r core iterations and coda over one column, with the
cache addressed by a position tensor so that every shape is fixed. "graph" captures that call with
torch.cuda.CUDAGraph and replays it per token (the launch overhead of the (P + rR + C) blocks is
paid once); "compile" wraps it in torch.compile(mode="reduce-overhead"). The prompt is prefilled
with the ordinary dynamic pass. Output equals `Engine` greedy decoding at r with init_scale 0
(the benchmark's baseline; the tests check it on CPU in eager mode).
"""

from __future__ import annotations

import torch

from recurlab.engine.cache import KVCache
from recurlab.engine.cached_pass import run_pass
from recurlab.errors import InferenceError

MODES = ("eager", "graph", "compile")


class StaticDecoder:
    def __init__(self, model, max_len: int, r: int, mode: str = "eager", kv_budget: int | None = None):
        if mode not in MODES:
            raise InferenceError(f"static decode mode {mode!r} is not one of {', '.join(MODES)}")
        self.device = next(model.parameters()).device
        if mode != "eager" and self.device.type != "cuda":
            raise InferenceError(f"static decode mode {mode!r} needs a CUDA model; use mode='eager' on CPU")
        self.model, self.max_len, self.r, self.mode, self.kv_budget = model, max_len, r, mode, kv_budget
        self.dtype = next(model.parameters()).dtype

    def _step(self, cache: KVCache, token: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        m = self.model
        rope = m.rope(cache.begin_static(pos))
        e = m.embed(token, rope, cache)
        s = torch.zeros_like(e)
        for i in range(self.r):
            s = m.core_step(s, e, rope, cache, i)
        return m.decode(s, rope, cache)[:, -1].argmax(-1)

    @torch.inference_mode()
    def generate(self, prompt_ids: list[int], n_new: int) -> list[int]:
        if not prompt_ids or len(prompt_ids) + n_new > self.max_len:
            raise InferenceError(f"prompt plus {n_new} new tokens must fit in max_len={self.max_len}")
        cache = KVCache(self.model.cfg, 1, self.max_len, self.r, self.kv_budget, self.device, self.dtype)
        ids = torch.tensor([prompt_ids], device=self.device)
        if len(prompt_ids) > 1:
            run_pass(self.model, cache, ids[:, :-1], self.r, init_scale=0.0)
        token = ids[:, -1:].clone()  # static inputs: overwritten in place between replays
        pos = torch.tensor(cache.length, device=self.device)
        step = self._runner(cache, token, pos)
        out = []
        for _ in range(n_new):
            nxt = step()
            cache.end_static()
            out.append(nxt)
            token.copy_(nxt[:, None])
            pos.add_(1)
        return [int(t) for t in torch.cat(out).tolist()]

    def _runner(self, cache: KVCache, token: torch.Tensor, pos: torch.Tensor):
        if self.mode == "eager":
            return lambda: self._step(cache, token, pos)
        if self.mode == "compile":
            fn = torch.compile(self._step, mode="reduce-overhead", fullgraph=False)
            return lambda: fn(cache, token, pos).clone()
        # warm up on a side stream (as CUDA graph capture requires), then capture one token step;
        # the warm-up writes only at `pos`, which the first replay overwrites
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self._step(cache, token, pos)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            result = self._step(cache, token, pos)
        cache.end_static(steps=0)  # the capture began a static pass; the replays own the column

        def replay():
            graph.replay()
            return result.clone()

        return replay
