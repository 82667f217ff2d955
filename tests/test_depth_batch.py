"""Depth batching (recurlab.engine.depth_batch) against decoding each prompt alone and against the
model's uncached forward pass."""

from __future__ import annotations

import pytest
import torch

from recurlab.engine import Engine, GenerateOptions
from recurlab.engine.depth_batch import DepthBatcher
from recurlab.engine.scoring import score_continuations
from recurlab.options.generate import parse_exit
from recurlab.errors import InferenceError
from test_engine_cli import invoke, one_line_error, run_dir  # noqa: F401  (run_dir: a fixture)
from test_engine_utils import encode, trained_model

# 16 prompts of 1 to 9 characters (different lengths, so rows are ragged and prefills right-padded)
PROMPTS = ["12+34=", "7+08=", "5", "99+1=", "3+4", "56+78=9", "1", "0+0=", "45+45=", "8+", "60+3=", "13+57=70",
           "2+2=4;5+", "9", "31+", "77+12=89"]
R = 8


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    return trained_model()


def greedy(**kw) -> GenerateOptions:
    kw.setdefault("stop_ids", ())  # no stop token: every prompt runs max_new_tokens tokens
    kw.setdefault("init_scale", 0.0)
    return GenerateOptions(r=R, max_new_tokens=6, **kw)


def alone(engine, opts_kw) -> list:
    return [engine.generate(p, greedy(**opts_kw)) for p in PROMPTS]


@pytest.mark.parametrize("opts_kw", [
    {"exit": "kl:5e-4"},
    {"exit": "kl:5e-4", "kv_budget": 3},
    {"exit": "kl:5e-4", "cache_lookup": "existing"},
    {"exit": "kl:5e-4", "cache_lookup": "existing", "kv_budget": 3, "init_scale": 0.7},
], ids=["kl", "kv-budget", "existing", "existing-budget-random-start"])
def test_depth_batched_generation_equals_each_prompt_alone(trained, opts_kw):
    model, tok = trained
    engine = Engine(model, tok)
    want = alone(engine, opts_kw)
    its = [i for res in want for i in res.iterations[0]]
    assert len(set(its)) > 2 and min(its) < R  # the rule exits tokens at different iterations
    for rows in (16, 5):  # all at once; and 5 rows, so that prompts enter as others finish
        got = engine.generate(PROMPTS, greedy(batch=rows, **opts_kw))
        assert got.depth is not None and got.depth["rows"] == rows
        for b, res in enumerate(want):
            assert got.generated_ids[b] == res.token_ids, (rows, PROMPTS[b])
            assert got.iterations[b] == res.iterations[0], (rows, PROMPTS[b])
        assert got.texts == [res.text for res in want]
        # every core pass carried more than one token: the rows really ran together
        assert got.depth["token_iterations"] == sum(its) and got.depth["core_passes"] < sum(its) / 2


def test_depth_batching_skips_what_the_padded_batch_runs(trained):
    """The padded batch gives the same tokens but runs every row until the slowest exits."""
    model, tok = trained
    engine = Engine(model, tok)
    depth = engine.generate(PROMPTS, greedy(exit="kl:5e-4"))
    padded = engine.generate(PROMPTS, greedy(exit="kl:5e-4", batching="padded"))
    assert padded.depth is None and depth.generated_ids == padded.generated_ids
    assert depth.iterations == padded.iterations
    # all 16 rows start together and each pass advances every active row by one iteration: the passes
    # are the longest row's iterations, where the padded batch pays the slowest row at every position
    longest = max(sum(row) for row in depth.iterations)
    slowest = sum(max(row[j] for row in padded.iterations) for j in range(6))
    assert depth.depth["core_passes"] == longest < slowest


def test_sampling_equals_each_prompt_alone(trained):
    model, tok = trained
    engine = Engine(model, tok)
    kw = dict(exit="kl:5e-4", temperature=0.9, init_scale=0.5, seed=3)
    got = engine.generate(PROMPTS[:8], greedy(batch=3, **kw))
    for b, p in enumerate(PROMPTS[:8]):
        res = engine.generate(p, greedy(**kw))
        assert got.generated_ids[b] == res.token_ids and got.iterations[b] == res.iterations[0]


def forward_logits(model, ids: list[int], r: int) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids]), n_no_grad=r, n_grad=0, init_scale=0.0).logits[0]


def test_padded_prompts_give_the_logits_of_the_uncached_forward(trained):
    """Prompts of different lengths share prefill passes (right-padded) and core passes (ragged
    columns); teacher-forced, every token's logits equal the plain forward pass of its own sequence."""
    model, tok = trained
    seqs = [encode(tok, p) for p in ("12+34=46", "5", "7+08=15;3", "99+1=100", "0+")]
    opts = GenerateOptions(r=4, init_scale=0.0, batching="depth", stop_ids=()).validate()
    batcher = DepthBatcher(model, opts, capacity=3, max_len=16)
    cuts = [max(1, len(s) // 2) for s in seqs]  # prompts of 1 to 5 tokens, then the rest teacher-forced
    for s, k in zip(seqs, cuts):
        batcher.submit(s[:k], forced=s[k:])
    got: dict[int, list] = {i: [] for i in range(len(seqs))}
    while batcher.busy:
        for ev in batcher.step():
            got[ev.request].append(ev.logits)
    assert len(set(cuts)) > 2
    for i, (s, k) in enumerate(zip(seqs, cuts)):
        full = forward_logits(model, s, 4)  # position t predicts token t + 1
        torch.testing.assert_close(torch.stack(got[i]), full[k - 1:-1], atol=2e-5, rtol=2e-5)


def test_scoring_under_an_exit_rule_is_the_same_batched_and_alone(trained):
    model, tok = trained
    pairs = [(encode(tok, c), tok.encode(x)) for c, x in
             [("12+34=", "46"), ("7+8=", "15"), ("45+45=", "90"), ("1+99=", "100"), ("6", "0+3=63"), ("5+5=", "10")]]
    crit = parse_exit("kl:5e-4")
    one = [score_continuations(model, [p], 8, exit=crit, init_scale=0.0)[0] for p in pairs]
    many = score_continuations(model, pairs, 8, exit=crit, init_scale=0.0, batch=4)
    padded = score_continuations(model, pairs, 8, exit=crit, init_scale=0.0, batching="padded")
    assert len({i for s in one for i in s.iterations}) > 1
    for a, b, c in zip(one, many, padded):
        assert a.iterations == b.iterations == c.iterations
        assert a.greedy == b.greedy == c.greedy
        assert abs(a.logprob - b.logprob) < 1e-5 and abs(a.logprob - c.logprob) < 1e-5


def test_lm_eval_loglikelihood_under_an_exit_rule_batched_and_unbatched():
    pytest.importorskip("lm_eval")
    from test_evaluation import lm_for, req

    pairs = [("12+34=", "46"), ("7+8=", "15"), ("45+45=", "90"), ("1+99=", "100"), ("60+", "3=63"), ("5", "+5=10")]
    requests = [req("loglikelihood", c, x, i=i) for i, (c, x) in enumerate(pairs)]
    results = {}
    for batch, batching in ((1, "auto"), (4, "auto"), (4, "padded")):
        lm = lm_for(r=8, batch_size=batch, init_scale=0.0, exit="kl:5e-4", batching=batching)
        results[batch, batching] = (lm.loglikelihood(requests), lm.records["t"]["scored"])
    base, its = results[1, "auto"]
    assert len(set(its)) > 1
    for got, got_its in results.values():
        assert got_its == its and [g for _, g in got] == [g for _, g in base]
        assert max(abs(x[0] - y[0]) for x, y in zip(got, base)) < 1e-5


def test_cancel_frees_the_row_for_the_next_prompt(trained):
    model, tok = trained
    opts = greedy(exit="kl:5e-4").validate()
    batcher = DepthBatcher(model, opts, capacity=1, max_len=32)
    first, second = batcher.submit(encode(tok, "12+34=")), batcher.submit(encode(tok, "7+8="))
    while not batcher.results[first].tokens:
        batcher.step()
    batcher.cancel(first)
    while batcher.busy:
        batcher.step()
    assert batcher.results[first].reason == "cancelled" and len(batcher.results[first].tokens) == 1
    want = Engine(model, tok).generate("7+8=", greedy(exit="kl:5e-4"))
    assert batcher.results[second].tokens == want.token_ids and batcher.results[second].reason == "length"


def test_stop_tokens_end_a_sequence_as_alone(trained):
    model, tok = trained
    engine = Engine(model, tok)
    opts = dict(exit="kl:5e-4", stop_ids=None)
    got = engine.generate(PROMPTS, greedy(batch=4, **opts))
    for b, p in enumerate(PROMPTS):
        res = engine.generate(p, greedy(**opts))
        assert got.generated_ids[b] == res.token_ids and got.stop_reasons[b] == res.stop_reasons[0]


def test_batching_options_are_checked():
    with pytest.raises(InferenceError, match="batching must be one of auto, depth, padded"):
        GenerateOptions(batching="wide").validate()
    with pytest.raises(InferenceError, match="batch must be a whole number >= 1"):
        GenerateOptions(batch=0).validate()
    with pytest.raises(InferenceError, match="speculative decoding takes one prompt at a time"):
        GenerateOptions(batching="depth", speculative="draft=2,lookahead=2").validate()
    assert GenerateOptions(exit="kl:5e-4").validate().depth_batched(2)
    assert not GenerateOptions(exit="kl:5e-4").validate().depth_batched(1)
    assert not GenerateOptions().validate().depth_batched(8)  # fixed r: the padded batch stays


def test_generate_reads_prompts_from_a_file(run_dir, tmp_path, trained):
    import json

    file = tmp_path / "prompts.txt"
    file.write_text("\n".join(PROMPTS[:6]) + "\n\n")
    res = invoke("generate", run_dir.path, "--prompts-file", file, "--batch", 4, "--r", R, "--exit", "kl:5e-4",
                 "--init-scale", 0, "--max-new-tokens", 4, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.strip().splitlines()[-1])
    assert out["depth"]["rows"] == 4 and out["prompts"] == PROMPTS[:6]
    engine = Engine(*trained)
    for b, p in enumerate(PROMPTS[:6]):
        want = engine.generate(p, GenerateOptions(r=R, exit="kl:5e-4", init_scale=0.0, max_new_tokens=4))
        assert out["generated_ids"][b] == want.token_ids and out["iterations"][b] == want.iterations[0]
    missing = one_line_error(invoke("generate", "--runs-dir", tmp_path, "x", "--prompts-file", tmp_path / "none.txt"))
    assert "no such file" in missing
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    assert "holds no prompt" in one_line_error(invoke("generate", "--runs-dir", tmp_path, "x", "--prompts-file", empty))
