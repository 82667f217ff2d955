"""`compile`: decode steps whose core iterations run as one compiled graph give the eager tokens,
iterations and cache entries; the option is refused where it does not apply, and a compile failure
is one InferenceError. The expected values come from the eager engine (the uncompiled code path)."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from recurlab.config import ModelConfig
from recurlab.engine import Engine, GenerateOptions, KVCache
from recurlab.engine.cached_pass import run_pass
from recurlab.engine.compiled import CompiledCore, padded_length
from recurlab.errors import InferenceError
from recurlab.model import RecurrentLM
from recurlab.tasks import CharVocab

# inductor needs a C++ compiler on the CPU; and under ATEN_CPU_CAPABILITY=default it still writes
# at::vec code that its own headers then do not declare (a torch limitation, not a CPU's)
needs_compiler = pytest.mark.skipif(
    not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++"))
    or os.environ.get("ATEN_CPU_CAPABILITY") == "default",
    reason="torch.compile on CPU needs a C++ compiler and vector kernels (not ATEN_CPU_CAPABILITY=default)")


@pytest.fixture(scope="module")
def engine():
    tok = CharVocab.default()
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=len(tok), n_embd=32, n_head=2, n_prelude=1, n_core=2, n_coda=1, qk_bias=True)
    model = RecurrentLM(cfg).eval()
    with torch.no_grad():  # non-zero biases, so that the compiled graph's bias-then-rotate order is checked
        for block in model.transformer.core_block:
            block.attn.qk_bias.normal_(0, 0.5)
    return Engine(model, tok)


@needs_compiler
def test_compiled_decode_gives_the_eager_tokens_iterations_and_cache(engine):
    prompt = "12+34="
    for first, extra in ((True, {}), (False, {"exit": "kl:1e-2"})):
        opts = dict(r=5, max_new_tokens=8, init_scale=0.0, stop_ids=(), **extra)
        eager = engine.generate(prompt, GenerateOptions(**opts))
        compiled = engine.generate(prompt, GenerateOptions(compile=True, **opts))
        assert compiled.token_ids == eager.token_ids
        # the engine compiles once and reports that time with the call that paid it
        assert eager.compile_seconds == 0.0 and (compiled.compile_seconds > 0.0) == first
        assert compiled.iterations == eager.iterations
    # one decode pass, both ways, from the same prefilled cache: the same logits and cache entries
    model = engine.model
    ids = torch.tensor([engine.encode(prompt)])
    caches = [KVCache(model.cfg, 1, padded_length(ids.shape[1] + 1), 5) for _ in range(2)]
    for cache in caches:
        run_pass(model, cache, ids[:, :-1], 5, init_scale=0.0)
    core = CompiledCore(model)
    eager_out = run_pass(model, caches[0], ids[:, -1:], 5, init_scale=0.0)
    compiled_out = run_pass(model, caches[1], ids[:, -1:], 5, init_scale=0.0, compiled=core)
    assert torch.allclose(compiled_out.logits, eager_out.logits, atol=1e-5, rtol=1e-5)
    col = ids.shape[1] - 1
    for a, b in zip(caches[0].core, caches[1].core):
        assert torch.allclose(a[..., col, :], b[..., col, :], atol=1e-5, rtol=1e-5)
        assert b[..., col, :].abs().sum() > 0  # the compiled graph wrote the column into the real buffers


def test_compile_is_refused_with_the_parallel_sampler():
    with pytest.raises(InferenceError, match="compile"):
        GenerateOptions(r=4, sampler="parallel", compile=True).validate()


def test_a_failed_compile_is_one_inference_error(engine, monkeypatch):
    core = CompiledCore(engine.model)

    def broken(*args):
        raise RuntimeError("no working C++ compiler\nlong details")

    monkeypatch.setattr(core, "_fn", broken)
    model = engine.model
    ids = torch.tensor([engine.encode("7+8=")])
    cache = KVCache(model.cfg, 1, padded_length(ids.shape[1]), 3)
    run_pass(model, cache, ids[:, :-1], 3, init_scale=0.0)
    with pytest.raises(InferenceError, match=r"compiling the decode step failed \(RuntimeError: no working C\+\+ compiler\)"):
        run_pass(model, cache, ids[:, -1:], 3, init_scale=0.0, compiled=core)
