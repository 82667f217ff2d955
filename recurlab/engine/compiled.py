"""A compiled core iteration for sequential decoding (torch.compile with static shapes, CPU or CUDA).

    core = CompiledCore(model)                         # one per model; compiles on first use
    out = run_pass(model, cache, ids[:, -1:], r, compiled=core)     # what `--compile` does per token

Eager decoding pays Python and dispatcher overhead on each of the ~30 torch calls of every block,
and a token at r = 32 runs 132 blocks over a single column, so per-call overhead, not arithmetic,
is what a CPU decode step spends its time on. Compiled, one core iteration (adapter, core blocks,
their cache writes and attention) runs as one piece of generated code that fuses the norms,
residual adds and rotations around the matmuls.

One graph serves every iteration of every token: the iteration's cache slots come in as tensors
(views of the cache's buffers), the column as a position tensor, and attention spans all `max_len`
columns under a mask. A cache of another length compiles again, which is why the engine rounds
the length up (`padded_length`). Used for one-column, one-row passes with a plain cache (no mask of
their own, no masked writes: `KVCache.takes_column`); everything else runs eagerly. The first call
compiles (seconds on a CPU, with a C++ compiler); a failure to compile is reported as an
InferenceError, and the model is left as it was.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from recurlab.engine.cache import attend_static
from recurlab.errors import InferenceError
from recurlab.model import Rope

# cache lengths are rounded up to a multiple of this when compiling: one graph per multiple
LENGTH_STEP = 64


def padded_length(n: int) -> int:
    return -(-n // LENGTH_STEP) * LENGTH_STEP


class _SlotCache:
    """The model's cache protocol over one iteration's slot buffers, built inside the graph."""

    def __init__(self, slots: tuple[Tensor, ...], pos: Tensor, mask: Tensor, gqa: bool):
        self.slots, self.pos, self.mask, self.gqa = slots, pos, mask, gqa

    def takes_column(self) -> bool:
        return False

    def attend(self, layer_key: tuple, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        # this iteration's slot of core layer j
        return attend_static(self.slots[layer_key[2]], self.pos, self.mask, q, k, v, self.gqa)


class CompiledCore:
    def __init__(self, model):
        self.model = model
        self.gqa = model.cfg.kv_heads != model.cfg.n_head
        # the C++ wrapper calls the generated kernels without a Python wrapper per call: on the CPU
        # reference configuration 30.6 against 25.3 tokens/s at r = 32 (the graph is called r times a token)
        on_cpu = next(model.parameters()).device.type == "cpu"
        self._fn = torch.compile(self._iteration, dynamic=False, fullgraph=True, options={"cpp_wrapper": on_cpu})
        self._compiled = False
        self.compile_seconds = 0.0  # wall time of the calls that compiled

    def _iteration(self, s: Tensor, e: Tensor, cos: Tensor, sin: Tensor, rotation: Tensor, pos: Tensor,
                   mask: Tensor, *slots: Tensor) -> Tensor:
        rope = Rope(cos, sin, self.model.cfg.rotary, matrix=rotation)
        return self.model.core_step(s, e, rope, _SlotCache(slots, pos, mask, self.gqa), 0)

    def usable(self, cache, ids: Tensor) -> bool:
        return ids.shape == (1, 1) and cache.takes_column()

    def begin(self, cache, rope: Rope):
        """A `core_step(s, e, rope, cache, i)` for the pass that `cache.begin(1)` just started."""
        pos = torch.tensor([cache.length], device=cache.start.device)
        args = (rope.cos, rope.sin, rope.matrix(), pos, cache.static_mask(pos))

        def step(s: Tensor, e: Tensor, _rope, _cache, i: int) -> Tensor:
            slots = tuple(buf[cache.slot_of(i)] for buf in cache.core)
            if self._compiled:
                return self._fn(s, e, *args, *slots)
            t0 = time.perf_counter()
            try:
                out = self._fn(s, e, *args, *slots)
            except Exception as err:  # dynamo/inductor raise many types; the first line says what
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                raise InferenceError(f"compiling the decode step failed ({type(err).__name__}: {first[:200]}); "
                                     "decode without --compile (inductor needs a working C++ compiler on CPU)") from None
            self._compiled = True
            self.compile_seconds += time.perf_counter() - t0
            return out

        return step
