"""The inference engine against the model's uncached forward pass, and its error messages."""

from __future__ import annotations

import json

import pytest
import torch

from recurlab.engine import Engine, GenerateOptions, KVCache, latent_trace, parse_exit, save_trace
from recurlab.engine.cached_pass import run_pass
from recurlab.errors import DeviceError, InferenceError
from recurlab.options.generate import EXIT_KINDS
from recurlab.rundir import RunDir, read_json
from recurlab.tasks import CharVocab, VocabError
from test_engine_utils import encode, random_model, trained_model

PROMPTS = ["12+34=", "7+08=", "5"]
P = len(encode(CharVocab.default(), "12+34="))  # columns of the first prompt as the engine feeds it


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    return trained_model()


def greedy(r: int, **kw) -> GenerateOptions:
    # no stop token, so that every call generates the same number of tokens and compares more
    kw.setdefault("stop_ids", ())
    kw.setdefault("max_new_tokens", 10)
    return GenerateOptions(r=r, init_scale=0.0, **kw)


def cached_logits(model, ids: torch.Tensor, r: int, prefill: int, budget=None, start=None) -> torch.Tensor:
    """Prefill `prefill` columns in one pass, then one column per pass, as generation does."""
    B, T = ids.shape
    cache = KVCache(model.cfg, B, T, r, budget=budget, start=start)
    with torch.inference_mode():
        outs = [run_pass(model, cache, ids[:, :prefill], r, init_scale=0.0).logits]
        for t in range(prefill, T):
            outs.append(run_pass(model, cache, ids[:, t:t + 1], r, init_scale=0.0).logits)
    return torch.cat(outs, 1)


@pytest.mark.parametrize("r", [1, 3, 6])
def test_cached_passes_equal_uncached_forward(trained, r):
    model, tok = trained
    ids = torch.tensor([encode(tok, "12+34=046;77+5")])
    with torch.no_grad():
        full = model(ids, n_no_grad=r, n_grad=0, init_scale=0.0).logits
    torch.testing.assert_close(cached_logits(model, ids, r, prefill=P - 1), full, atol=1e-4, rtol=1e-4)


def test_generated_tokens_are_the_forward_argmax(trained):
    model, tok = trained
    res = Engine(model, tok).generate("12+34=", greedy(5))
    ids = torch.tensor([encode(tok, "12+34=") + res.token_ids])
    with torch.no_grad():
        full = model(ids, n_no_grad=5, n_grad=0, init_scale=0.0).logits
    assert res.token_ids == full[0, P - 1:-1].argmax(-1).tolist()
    assert len(set(res.token_ids)) > 1  # the check means something only if the argmaxes differ
    assert res.iterations == [[5] * 10]


def test_left_padded_batch_equals_single_prompts(trained):
    model, tok = trained
    engine = Engine(model, tok)
    batch = engine.generate(PROMPTS, greedy(4))
    for b, p in enumerate(PROMPTS):
        assert batch.generated_ids[b] == engine.generate(p, greedy(4)).token_ids
    # and the padded row's logits equal the unpadded forward pass
    short = encode(tok, "7+08=")
    ids = torch.tensor([encode(tok, "12+34="), [tok.pad_id] + short])
    logits = cached_logits(model, ids, 4, prefill=3, start=torch.tensor([0, 1]))
    with torch.no_grad():
        full = model(torch.tensor([short]), n_no_grad=4, n_grad=0, init_scale=0.0).logits
    torch.testing.assert_close(logits[1, 1:], full[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", sorted(EXIT_KINDS))
def test_exit_threshold_zero_is_fixed_r(trained, kind):
    model, tok = trained
    engine = Engine(model, tok)
    fixed = engine.generate(PROMPTS, greedy(6))
    zero = engine.generate(PROMPTS, greedy(6, exit=f"{kind}:0"))
    assert zero.generated_ids == fixed.generated_ids
    assert zero.iterations == fixed.iterations == [[6] * 10] * 3


def test_kl_exit_saves_iterations_and_respects_bounds(trained):
    model, tok = trained
    engine = Engine(model, tok)
    res = engine.generate(PROMPTS, greedy(12, exit="kl:5e-4,min=2"))
    its = [i for row in res.iterations for i in row]
    assert all(2 <= i <= 12 for i in its)
    assert res.mean_iterations < 12
    capped = engine.generate(PROMPTS, greedy(12, exit="argmax:2,every=2,max=8"))
    assert all(i <= 8 and i % 2 == 0 for row in capped.iterations for i in row)


def test_exited_token_fills_its_remaining_slots(trained):
    """A later token at iteration i reads an exited token's latest entry for that layer."""
    model, tok = trained
    r = 8
    ids = torch.tensor([encode(tok, "12+34=")])
    # a threshold that makes this token exit early on this CPU's weights, whatever their last bits
    for threshold in (0.5, 0.3, 0.7, 0.2, 0.9, 0.1, 0.99):
        cache = KVCache(model.cfg, 1, P, r)
        with torch.inference_mode():
            run_pass(model, cache, ids[:, :P - 1], r, init_scale=0.0)
            before = [buf.clone() for buf in cache.core]
            out = run_pass(model, cache, ids[:, P - 1:], r, init_scale=0.0, exit=parse_exit(f"latent:{threshold}"))
        e = int(out.iterations[0])
        if 1 <= e < r:
            break
    assert 1 <= e < r, "the test needs an early exit"
    for buf, old in zip(cache.core, before):
        col = buf[:, :, :, :, P - 1]
        for slot in range(e, r):
            torch.testing.assert_close(col[slot], col[e - 1], atol=0, rtol=0)
        # earlier columns are untouched
        torch.testing.assert_close(buf[:, :, :, :, :P - 1], old[:, :, :, :, :P - 1], atol=0, rtol=0)


class DictCache:
    """An independent cache in the reference's style: entries kept per (layer key, column), so an
    iteration a token skipped simply has no entry. "existing" attends to the entries present for
    the layer key (the reference's default); "latest" falls back to the token's entry at its
    deepest iteration of the same core layer (the reference's latest-m4)."""

    def __init__(self, lookup: str):
        self.lookup, self.store, self.base = lookup, {}, 0

    def takes_column(self):
        return False  # every pass goes through `attend`, the reference-style lookup under test

    def attend(self, layer_key, q, k, v):
        entries = self.store.setdefault(layer_key, {})
        for t in range(q.shape[1]):
            entries[self.base + t] = (k[:, t], v[:, t])
        cols = sorted({c for key in self.store if key[0] == layer_key[0] for c in self.store[key]})
        keys, values, kept = [], [], []
        for c in cols:
            if c in entries:
                entry = entries[c]
            elif self.lookup == "latest" and layer_key[0] == "core":
                deepest = max(key[1] for key in self.store if key[0] == "core" and key[2] == layer_key[2]
                              and c in self.store[key] and key[1] < layer_key[1])
                entry = self.store[("core", deepest, layer_key[2])][c]
            else:
                continue
            keys.append(entry[0])
            values.append(entry[1])
            kept.append(c)
        K, V = torch.stack(keys, 1).transpose(1, 2), torch.stack(values, 1).transpose(1, 2)
        q_cols = torch.arange(self.base, self.base + q.shape[1])[:, None]
        mask = torch.tensor(kept)[None, :] <= q_cols
        return torch.nn.functional.scaled_dot_product_attention(q.transpose(1, 2), K, V, attn_mask=mask)

    def run(self, model, ids, iterations):
        """Columns `ids` (1, T) at the cache's next positions, each running `iterations`."""
        T = ids.shape[1]
        rope = model.rope(torch.arange(self.base, self.base + T))
        e = model.embed(ids, rope, self)
        s = torch.zeros_like(e)
        for i in range(iterations):
            s = model.core_step(s, e, rope, self, i)
        logits = model.decode(s, rope, self)
        self.base += T
        return logits


@pytest.mark.parametrize("lookup", ["latest", "existing"])
def test_cache_lookup_of_an_exited_token_matches_a_reference_style_cache(trained, lookup):
    """Token A stops after 3 of 8 iterations; token B (all 8) reads it by the lookup rule."""
    model, tok = trained
    r, e = 8, 3
    ids = torch.tensor([encode(tok, "12+34=57")])
    n = ids.shape[1]
    cache = KVCache(model.cfg, 1, n, r, lookup=lookup)
    ref = DictCache(lookup)
    with torch.inference_mode():
        run_pass(model, cache, ids[:, :n - 2], r, init_scale=0.0)
        run_pass(model, cache, ids[:, n - 2:n - 1], e, init_scale=0.0)  # A: an exit after e iterations
        got = run_pass(model, cache, ids[:, n - 1:], r, init_scale=0.0).logits
        ref.run(model, ids[:, :n - 2], r)
        ref.run(model, ids[:, n - 2:n - 1], e)
        want = ref.run(model, ids[:, n - 1:], r)
        other = DictCache("existing" if lookup == "latest" else "latest")
        other.run(model, ids[:, :n - 2], r)
        other.run(model, ids[:, n - 2:n - 1], e)
        unlike = other.run(model, ids[:, n - 1:], r)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert (got - unlike).abs().max() > 1e-4  # the two rules differ here, so the match says something


def test_generation_with_the_existing_lookup(trained):
    model, tok = trained
    engine = Engine(model, tok)
    opts = dict(exit="latent:0.3", cache_lookup="existing")
    batch = engine.generate(PROMPTS, greedy(12, **opts))
    assert any(i < 12 for row in batch.iterations for i in row)
    for b, p in enumerate(PROMPTS):  # rows exit at different iterations; each reads only its own row's depths
        alone = engine.generate(p, greedy(12, **opts))
        assert batch.generated_ids[b] == alone.token_ids and batch.iterations[b] == alone.iterations[0]
    with pytest.raises(InferenceError, match="cache lookup must be one of latest, existing"):
        GenerateOptions(cache_lookup="full").validate()


def test_kl_exit_is_kl_of_the_previous_from_the_current_distribution():
    """The reference's `kl` is F.kl_div(log p_i, log p_{i-1}, log_target=True) = KL(p_{i-1} || p_i)."""
    from recurlab.engine.exits import ExitTracker

    prev = torch.tensor([[0.5, 0.5]]).log()
    cur = torch.tensor([[0.9, 0.1]]).log()
    reference = float(torch.nn.functional.kl_div(cur, prev, reduction="none", log_target=True).sum())
    other = float((cur.exp() * (cur - prev)).sum())
    assert reference == pytest.approx(0.5108, abs=1e-4) and other == pytest.approx(0.3681, abs=1e-4)
    state = torch.zeros(1, 4)
    for kind, converges in (("kl", False), ("kl-rev", True)):  # threshold between the two directions
        tracker = ExitTracker(parse_exit(f"{kind}:0.45"))
        tracker.update(state, prev)
        assert bool(tracker.update(state, cur)[0]) is converges, kind


def test_batched_early_exit_equals_each_prompt_alone(trained):
    """Batch rows that exit at different iterations give the same tokens as each prompt alone."""
    model, tok = trained
    engine = Engine(model, tok)
    batch = engine.generate(PROMPTS, greedy(10, exit="kl:1e-3"))
    assert len({i for row in batch.iterations for i in row}) > 1
    for b, p in enumerate(PROMPTS):
        alone = engine.generate(p, greedy(10, exit="kl:1e-3"))
        assert batch.generated_ids[b] == alone.token_ids
        assert batch.iterations[b] == alone.iterations[0]


@pytest.mark.parametrize("spec", ["draft=1,lookahead=3", "draft=2,lookahead=5", "draft=3,lookahead=1"])
def test_speculative_greedy_equals_plain_greedy(trained, spec):
    model, tok = trained
    engine = Engine(model, tok)
    for p in ["12+34=", "99+01=3"]:
        plain = engine.generate(p, greedy(6, max_new_tokens=14))
        spec_res = engine.generate(p, greedy(6, max_new_tokens=14, speculative=spec))
        assert spec_res.token_ids == plain.token_ids
        assert spec_res.speculative["drafted"] > 0
        assert 0.0 <= spec_res.acceptance_rate <= 1.0


@pytest.mark.parametrize("r,spec", [(2, "draft=1,lookahead=4"), (3, "draft=2,lookahead=3")])
def test_speculative_greedy_equals_plain_greedy_with_random_starts(trained, r, spec):
    """At init scale 1 each token's start is drawn from (seed, position), whatever the path."""
    model, tok = trained
    engine = Engine(model, tok)
    outputs = set()
    for seed in range(6):
        for p in ["12+34=", "99+01=3", "7+8="]:
            opts = dict(r=r, max_new_tokens=12, stop_ids=(), init_scale=1.0, seed=seed)
            plain = engine.generate(p, GenerateOptions(**opts))
            spec_res = engine.generate(p, GenerateOptions(**opts, speculative=spec))
            assert spec_res.token_ids == plain.token_ids, (seed, p)
            outputs.add((p, tuple(plain.token_ids)))
    assert len(outputs) > 3  # the starts change the output at this r, so the equality is not vacuous


def test_speculative_with_a_kv_budget_is_refused():
    with pytest.raises(InferenceError, match="exact only with a full KV cache"):
        GenerateOptions(r=8, kv_budget=4, speculative="draft=2,lookahead=4").validate()
    GenerateOptions(r=8, kv_budget=8, speculative="draft=2,lookahead=4").validate()  # budget = r: no sharing


def test_speculative_rejects_some_drafts(trained):
    """With one draft iteration the drafts disagree sometimes, so the rollback path runs; the prompt
    is picked among several so that a rejection happens whatever this CPU's last bits."""
    model, tok = trained
    engine = Engine(model, tok)
    for prompt in ["12+34=", "99+01=", "7+8=", "55+55=", "3+96="]:
        plain = engine.generate(prompt, greedy(6, max_new_tokens=20))
        res = engine.generate(prompt, greedy(6, max_new_tokens=20, speculative="draft=1,lookahead=4"))
        assert res.token_ids == plain.token_ids  # rolled back to exactly plain greedy decoding
        if res.speculative["accepted"] < res.speculative["drafted"]:
            break
    assert res.acceptance_rate < 1.0 and res.speculative["accepted"] < res.speculative["drafted"]


def test_speculative_sampling_is_seeded_and_valid(trained):
    model, tok = trained
    engine = Engine(model, tok)
    opts = dict(r=4, max_new_tokens=12, temperature=1.0, top_k=8, seed=3, stop_ids=(), speculative="draft=1,lookahead=3")
    a = engine.generate("12+34=", GenerateOptions(**opts))
    b = engine.generate("12+34=", GenerateOptions(**opts))
    assert a.token_ids == b.token_ids and len(a.token_ids) == 12
    assert all(0 <= t < len(tok) for t in a.token_ids)


def test_kv_budget_equal_to_r_is_no_sharing_and_smaller_budget_saves_memory(trained):
    model, tok = trained
    engine = Engine(model, tok)
    plain = engine.generate(PROMPTS, greedy(6))
    same = engine.generate(PROMPTS, greedy(6, kv_budget=6))
    assert same.generated_ids == plain.generated_ids and same.cache_bytes == plain.cache_bytes
    ids = torch.tensor([encode(tok, "12+34=046;77+5")])
    torch.testing.assert_close(cached_logits(model, ids, 6, P - 1, budget=6), cached_logits(model, ids, 6, P - 1),
                               atol=0, rtol=0)
    shared = engine.generate(PROMPTS, greedy(6, kv_budget=2))
    cfg = model.cfg
    per_slot = 2 * 3 * cfg.n_embd * (P + 10) * 4  # k and v, batch 3, float32
    assert plain.cache_bytes - shared.cache_bytes == cfg.n_core * (6 - 2) * per_slot
    # sharing changes what later iterations read, so the logits differ from no sharing
    assert not torch.allclose(cached_logits(model, ids, 6, P - 1, budget=2), cached_logits(model, ids, 6, P - 1))


def test_continuous_warm_start_uses_previous_state(trained):
    model, tok = trained
    engine = Engine(model, tok)
    cont = engine.generate("12+34=", greedy(2, continuous=True))
    assert len(cont.token_ids) == 10
    # reference for the first generated token: warm-start from the prefill's last state
    ids = torch.tensor([encode(tok, "12+34=")])
    cache = KVCache(model.cfg, 1, P, 2)
    with torch.inference_mode():
        prev = run_pass(model, cache, ids[:, :P - 1], 2, init_scale=0.0).state[:, -1:]
        warm = run_pass(model, cache, ids[:, P - 1:], 2, s0=prev).logits[0, -1]
        cache.truncate(P - 1)
        cold = run_pass(model, cache, ids[:, P - 1:], 2, init_scale=0.0).logits[0, -1]
    assert cont.token_ids[0] == int(warm.argmax())
    assert not torch.allclose(warm, cold, atol=1e-3)  # the warm start changes the computation


def test_streaming_events_rebuild_the_result(trained):
    model, tok = trained
    stream = Engine(model, tok).stream(PROMPTS, greedy(3, exit="kl:1e-3"))
    events = list(stream)
    res = stream.result
    for b in range(len(PROMPTS)):
        mine = [ev for ev in events if ev.row == b]
        assert "".join(ev.text for ev in mine) == res.texts[b]
        assert [ev.token_id for ev in mine] == res.generated_ids[b]
        assert [ev.iterations for ev in mine] == res.iterations[b]
        assert [ev.index for ev in mine] == list(range(len(mine)))
    assert res.tokens_per_s > 0 and res.cache_bytes > 0
    json.dumps(res.to_dict())


def test_stop_token_ends_a_row(trained):
    """The stop token is taken from what the model writes (not hoped for): the first token of the
    free run that did not occur before it, so the stopped row is exactly the free run's prefix."""
    model, tok = trained
    engine = Engine(model, tok)
    free = engine.generate("12+34=", GenerateOptions(r=4, init_scale=0.0, max_new_tokens=20, stop_ids=())).token_ids
    j = next((i for i in range(1, len(free)) if free[i] not in free[:i]), None)
    assert j is not None, f"the free run repeats one token: {free}"
    res = engine.generate("12+34=", GenerateOptions(r=4, init_scale=0.0, max_new_tokens=20, stop_ids={free[j]}))
    assert res.stop_reasons == ["stop"] and res.token_ids == free[:j]
    default = engine.generate("12+34=", GenerateOptions(r=4, init_scale=0.0, max_new_tokens=20))
    assert tok.eos_id not in default.token_ids  # eos is a stop token by default: it is never emitted


def test_sampling_is_seeded_and_top_k_one_is_greedy(trained):
    model, tok = trained
    engine = Engine(model, tok)
    a = engine.generate(PROMPTS, GenerateOptions(r=3, temperature=1.5, seed=7, stop_ids=(), max_new_tokens=8))
    b = engine.generate(PROMPTS, GenerateOptions(r=3, temperature=1.5, seed=7, stop_ids=(), max_new_tokens=8))
    c = engine.generate(PROMPTS, GenerateOptions(r=3, temperature=1.5, seed=8, stop_ids=(), max_new_tokens=8))
    assert a.generated_ids == b.generated_ids != c.generated_ids
    k1 = engine.generate(PROMPTS, greedy(3, temperature=0.7, top_k=1, seed=5))
    assert k1.generated_ids == engine.generate(PROMPTS, greedy(3)).generated_ids


def test_trace_agrees_with_forward_at_every_iteration(trained, tmp_path):
    model, tok = trained
    r = 5
    trace = latent_trace(model, tok, "12+34=", r=r, criterion="kl:1e-3", starts=3, init_scale=0.0)
    ids = torch.tensor([encode(tok, "12+34=")])
    for i in range(1, r + 1):
        with torch.no_grad():
            probs = model(ids, n_no_grad=i, n_grad=0, init_scale=0.0).logits.softmax(-1)[0]
        for t, tokrow in enumerate(trace["tokens"]):
            top = tokrow["top"][i - 1]
            want_p, want_i = probs[t].topk(5)
            assert [x["id"] for x in top][:2] == want_i.tolist()[:2]
            assert [x["p"] for x in top] == pytest.approx(want_p.tolist(), abs=1e-4)
            ent = float(-(probs[t] * probs[t].clamp_min(1e-30).log()).sum())
            assert tokrow["entropy"][i - 1] == pytest.approx(ent, abs=1e-4)
    tokrow = trace["tokens"][3]
    assert tokrow["dist_final"][-1] == 0 and tokrow["kl_final"][-1] == pytest.approx(0, abs=1e-6)
    assert tokrow["kl_prev"][0] is None and len(tokrow["pca"]) == r
    assert all(1 <= t["exit_iteration"] <= r for t in trace["tokens"])
    pi = trace["path_independence"]
    assert len(pi["distance"]) == P and len(pi["distance"][0]) == r and len(pi["pca"]) == 3
    assert pi["distance_at_start"][0] > 0
    run = RunDir(tmp_path / "run")
    path = save_trace(run, "t1", trace)
    assert path == run.traces_dir / "t1.json" and read_json(path) == json.loads(json.dumps(trace))
    assert read_json(path)["version"] == 1
    # a second trace under the same name is a new file: both traces stay, byte for byte
    first = path.read_bytes()
    again = save_trace(run, "t1", {**trace, "r": trace["r"] + 1})
    assert again == run.traces_dir / "t1-2.json" and path.read_bytes() == first
    assert read_json(again)["r"] == trace["r"] + 1


def test_trace_after_generation_covers_generated_tokens(trained):
    model, tok = trained
    trace = latent_trace(model, tok, "12+34=", r=3, criterion=None, generate=greedy(3, max_new_tokens=4))
    assert trace["n_prompt"] == P and len(trace["tokens"]) == P + 4
    assert trace["generated_text"] == tok.decode([t["id"] for t in trace["tokens"][P:]])
    assert trace["path_independence"] is None and trace["tokens"][0]["exit_iteration"] is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(r=0), "r must be"),
        (dict(exit="bogus:1"), "unknown exit criterion"),
        (dict(exit="kl:-1e-3"), "must be >= 0"),
        (dict(exit="cosine:1.5"), r"\[0, 1\]"),
        (dict(exit="kl:5e-4,foo=2"), "exit option"),
        (dict(temperature=-1.0), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_k=-2), "top_k"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(kv_budget=0), "kv_budget"),
        (dict(init_scale=-1.0), "init_scale"),
        (dict(speculative="draft=8,lookahead=2", r=8), "below r"),
        (dict(speculative="draft=2,lookahead=x"), "whole number"),
        (dict(speculative="draft=2,foo=3"), "speculative option"),
        (dict(speculative="draft=2", exit="kl:5e-4"), "drop --exit"),
    ],
)
def test_bad_options_give_one_line(kwargs, match):
    model, tok = random_model()
    with pytest.raises(InferenceError, match=match) as err:
        Engine(model, tok).generate("12+34=", GenerateOptions(**kwargs))
    assert "\n" not in str(err.value)


def test_bad_prompts_give_one_line():
    model, tok = random_model()
    engine = Engine(model, tok)
    with pytest.raises(InferenceError, match="prompt is empty"):
        engine.generate("", GenerateOptions(r=2))
    with pytest.raises(VocabError, match="not in this model's vocabulary") as err:
        engine.generate("12+AB=", GenerateOptions(r=2))
    assert "\n" not in str(err.value)
    with pytest.raises(InferenceError, match="one prompt at a time"):
        engine.generate(["1+2=", "3+4="], GenerateOptions(r=4, speculative="draft=1"))
    with pytest.raises(InferenceError, match="starts"):
        latent_trace(model, tok, "1+2=", r=2, starts=1)
    with pytest.raises(InferenceError, match="r must be"):
        latent_trace(model, tok, "1+2=", r=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_gives_one_line():
    model, tok = random_model()
    with pytest.raises(DeviceError, match="CUDA is not available"):
        Engine(model, tok, device="cuda")


def test_static_decoder_eager_equals_engine_greedy(trained):
    """The static-shape step (what the CUDA graph captures) gives the engine's greedy tokens."""
    from recurlab.engine.static_decode import StaticDecoder

    model, tok = trained
    want = Engine(model, tok).generate("12+34=", greedy(4, max_new_tokens=8)).token_ids
    got = StaticDecoder(model, max_len=16, r=4, mode="eager").generate(encode(tok, "12+34="), 8)
    assert got == want
    with pytest.raises(InferenceError, match="needs a CUDA model"):
        StaticDecoder(model, max_len=16, r=4, mode="graph")
