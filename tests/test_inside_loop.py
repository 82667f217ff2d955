"""Lenses, interventions at iteration i and the verdict on each token's dynamics, against
independent computations in the tests (forward passes, explicit Jacobians)."""

from __future__ import annotations

import math

import pytest
import torch

from recurlab.config import ModelConfig
from recurlab.engine import Engine
from recurlab.engine.interventions import (Sequence, add_noise, causal_trace, inject_off, patch, prepare,
                                           save_intervention, with_prompt)
from recurlab.engine.lens import Lens, TunedLens, get_lens
from recurlab.engine.lens_train import heldout_kl, train_tuned_lens
from recurlab.engine.stability import classify, spectral_radius
from recurlab.errors import InferenceError
from recurlab.model import RecurrentLM
from recurlab.tasks import CharVocab
from test_engine_utils import encode, random_model

R = 6


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return random_model(1.0, seed=3)


def seq(tok, prompt: str, answer: str = "") -> Sequence:
    ids = encode(tok, prompt)
    return Sequence(prompt, ids + tok.encode(answer), len(ids))


def states_of(model, ids: list[int], r: int, seed: int = 0):
    """The trajectory written out in the test: embed, init_state, r core steps."""
    x = torch.tensor([ids])
    rope = model.rope(torch.arange(len(ids)))
    with torch.no_grad():
        e = model.embed(x, rope)
        s = model.init_state(e, None, torch.Generator().manual_seed(seed))
        out = []
        for i in range(r):
            s = model.core_step(s, e, rope, None, i)
            out.append(s)
    return rope, e, out


def answer_logp(logits: torch.Tensor, positions, targets) -> float:
    logp = logits.float().log_softmax(-1)
    return sum(float(logp[0, p, t]) for p, t in zip(positions, targets))


# ---- interventions ---------------------------------------------------------------------------

@pytest.mark.parametrize("token,iteration", [(0, 1), (3, 2), (6, R)])
def test_patching_a_prompt_with_itself_changes_nothing_exactly(tiny, token, iteration):
    model, tok = tiny
    a = seq(tok, "12+34=", "46")
    rec = patch(model, tok, a, a, token, iteration, R)
    assert rec["delta"] == 0.0 and rec["logp_after"] == rec["logp_clean"]
    assert rec["top_after"] == rec["top_clean"] and rec["answer_kept"] == (rec["top_clean"]["id"] == a.answer[0])
    clean = patch(model, tok, a, seq(tok, "12+34=", "46"), token, iteration, R)["trace"]
    assert [t["rel_change"] for t in rec["trace"]["tokens"]] == [t["rel_change"] for t in clean["tokens"]]


def test_a_patch_at_the_last_iteration_moves_the_answer_as_a_forward_pass_says(tiny):
    model, tok = tiny
    base, source = seq(tok, "12+34=", "46"), seq(tok, "57+21=", "46")
    t = base.n_prompt - 1  # the position that predicts the first answer token
    rec = patch(model, tok, base, source, t, R, R)
    # independent: the model's own forward for both, then the coda on the spliced final state
    rope = model.rope(torch.arange(len(base.ids)))
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        fb = model(torch.tensor([base.ids]), n_no_grad=R, n_grad=0, generator=gen).logits
        _, _, sb = states_of(model, base.ids, R)
        _, _, ss = states_of(model, source.ids, R)
        spliced = sb[-1].clone()
        spliced[0, t] = ss[-1][0, t]
        after = model.decode(spliced, rope)
    positions = list(range(base.n_prompt - 1, len(base.ids) - 1))
    expected = answer_logp(after, positions, base.answer) - answer_logp(fb, positions, base.answer)
    assert rec["answer"]["positions"] == positions
    assert abs(expected) > 1e-3  # the case really moves the answer
    assert rec["delta"] == pytest.approx(expected, abs=1e-5)


def test_causal_trace_cells_equal_single_patches(tiny):
    model, tok = tiny
    clean, corrupt = seq(tok, "12+34=", "46"), seq(tok, "52+31=", "46")
    ct = causal_trace(model, tok, clean, corrupt, R)
    assert ct["complete"] and len(ct["logp"]) == len(clean.ids) and len(ct["logp"][0]) == R
    for t in range(len(clean.ids)):
        for i in range(1, R + 1):
            single = patch(model, tok, corrupt, clean, t, i, R, with_trace=False)
            assert ct["logp"][t][i - 1] == pytest.approx(single["logp_after"], abs=1e-4), (t, i)
    # restoring every token at the last iteration is the clean run itself: at the answer's position it recovers fully
    assert ct["logp_corrupt"] != pytest.approx(ct["logp_clean"], abs=1e-3)


def test_injection_off_and_noise_follow_the_recurrence(tiny):
    model, tok = tiny
    a = seq(tok, "12+34=", "46")
    rope, e, sts = states_of(model, a.ids, R)
    off = inject_off(model, tok, a, 3, R)
    with torch.no_grad():  # iterations 3.. with zero injection, written out
        s = sts[1]
        for i in range(2, R):
            s = model.core_step(s, torch.zeros_like(e), rope, None, i)
        expected = answer_logp(model.decode(s, rope), off["answer"]["positions"], a.answer)
    assert off["logp_after"] == pytest.approx(expected, abs=1e-5)
    assert off["distance"][0][:2] == [0.0, 0.0] and off["distance"][-1][2] > 0
    noisy = add_noise(model, tok, a, 0.5, 2, R, tol=1e-2)
    assert all(d[0] == 0.0 for d in noisy["distance"])  # iteration 1 is before the noise
    assert all(d[1] == pytest.approx(0.5, rel=1e-3) for d in noisy["distance"])  # relative size 0.5 at iteration 2
    for d, at in zip(noisy["distance"], noisy["recovered_at"]):
        assert at is None or all(v < 1e-2 for v in d[at - 1:])


def test_intervention_errors_are_one_line(tiny, tmp_path):
    model, tok = tiny
    a, short = seq(tok, "12+34=", "46"), seq(tok, "1")
    with pytest.raises(InferenceError, match="only 2 tokens"):
        patch(model, tok, a, short, 5, 1, R)
    with pytest.raises(InferenceError, match="outside 1..6"):
        patch(model, tok, a, a, 1, 7, R)
    with pytest.raises(InferenceError, match="as long"):
        causal_trace(model, tok, a, seq(tok, "1+2=", "46"), R)
    ouro_like = RecurrentLM(ModelConfig(vocab_size=len(tok), n_embd=16, n_head=2, n_prelude=0, n_coda=0,
                                        injection="none", state_init="embedding", step_norm=True))
    with pytest.raises(InferenceError, match="no input injection"):
        inject_off(ouro_like, tok, a, 2, R)
    rec = patch(model, tok, a, a, 1, 1, R, with_trace=False)
    p1, p2 = save_intervention(tmp_path, rec, "x"), save_intervention(tmp_path, rec, "x")
    assert p1.name == "x.json" and p2.name == "x-2.json" and p1.read_text() == p2.read_text()


def test_prepare_appends_the_greedy_answer(tiny):
    model, tok = tiny
    engine = Engine(model, tok)
    s = prepare(engine, "12+34=", answer_tokens=3, r=R)
    other = with_prompt(engine, "99+11=", s)
    assert s.n_prompt == len(encode(tok, "12+34=")) and other.answer == s.answer and len(other.ids) == len(s.ids)


# ---- lenses ----------------------------------------------------------------------------------

def test_without_coda_blocks_the_logit_and_coda_lenses_agree():
    torch.manual_seed(0)
    tok = CharVocab.default()
    model = RecurrentLM(ModelConfig(vocab_size=len(tok), n_embd=32, n_head=2, n_coda=0)).eval()
    with torch.no_grad():  # norms away from 1, so that a norm applied twice or skipped shows
        model.transformer.ln_f.weight.uniform_(0.5, 1.5)
    ids = encode(tok, "12+34=46")
    rope, _, sts = states_of(model, ids, R)
    states = torch.cat(sts)
    coda, logit = Lens("coda").logits(model, states, rope), Lens("logit").logits(model, states, rope)
    assert torch.equal(coda, logit)
    with_coda, _ = random_model(1.0, seed=4)
    rope2, _, sts2 = states_of(with_coda, ids, R)
    assert not torch.allclose(Lens("coda").logits(with_coda, torch.cat(sts2), rope2),
                              Lens("logit").logits(with_coda, torch.cat(sts2), rope2), atol=1e-3)


def test_a_tuned_lens_lowers_heldout_kl_at_early_iterations(tiny):
    model, tok = tiny
    gen = torch.Generator().manual_seed(0)
    seqs = [torch.randint(4, len(tok), (12,), generator=gen).tolist() for _ in range(160)]
    train, heldout = seqs[:128], seqs[128:]
    # before the head, an untrained tuned lens is the logit lens itself: only training can lower it
    lens, report = train_tuned_lens(model, train, heldout, 4, steps=150, batch_size=32, lr=3e-3, place="head")
    untrained = TunedLens(model.cfg.n_embd, 4, place="head")
    # independent of the report: the held-out KL measured again here, per lens
    kl = heldout_kl(model, [Lens("logit"), lens], heldout, 4, seed=5)
    assert heldout_kl(model, [untrained], heldout, 4, seed=5)["tuned"] == kl["logit"]
    for i in range(2):
        assert kl["tuned"][i] < 0.9 * kl["logit"][i], (i, kl)
        assert report["kl"]["tuned"][i] < report["kl"]["logit"][i]
    assert get_lens("tuned", lens) is lens
    with pytest.raises(InferenceError, match="lens train"):
        get_lens("tuned", None)


# ---- dynamics --------------------------------------------------------------------------------

def test_power_iteration_radius_matches_the_explicit_jacobian():
    torch.manual_seed(1)
    model = RecurrentLM(ModelConfig(vocab_size=32, n_embd=16, n_head=2)).eval()
    ids = torch.randint(0, 32, (7,)).tolist()
    rope, e, sts = states_of(model, ids, 8)
    s = sts[-1][0].clone()
    rho = spectral_radius(model, s, e[0].clone(), rope, 8)
    J = torch.autograd.functional.jacobian(lambda x: model.core_step(x[None], e, rope, None, 8)[0], s)
    for t in range(len(ids)):
        exact = float(torch.linalg.eigvals(J[t, :, t, :].double()).abs().max())
        assert float(rho[t]) == pytest.approx(exact, abs=1e-3), t
    # the whole step's Jacobian is block-triangular: its radius is the largest token's
    full = float(torch.linalg.eigvals(J.reshape(7 * 16, 7 * 16).double()).abs().max())
    assert float(rho.max()) == pytest.approx(full, abs=1e-3)


def test_verdicts_on_constructed_trajectories():
    r, d = 16, 8
    g = torch.Generator().manual_seed(0)
    fixed = torch.randn(d, generator=g)
    settle = torch.stack([fixed + 0.5 ** i * torch.randn(d, generator=g) for i in range(r)])
    a, b = torch.randn(d, generator=g), torch.randn(d, generator=g)
    orbit = torch.stack([a if i % 2 else b for i in range(r)])
    drift = torch.stack([torch.randn(d, generator=g) * (1 + i) for i in range(r)])
    states = torch.stack([settle, orbit, drift], dim=1)  # (r, 3, d)
    tops = torch.tensor([[0, i % 2, i] for i in range(r)])
    v = classify(states, tops, tol=1e-3)
    assert v[0]["kind"] == "settling" and v[0]["at"] < r
    assert all(v[0]["at"] <= i + 1 or (settle[i] - settle[i - 1]).norm() / settle[i].norm() >= 1e-3 for i in range(1, r))
    assert v[1] == {"kind": "orbiting", "at": None, "period": 2}
    assert v[2]["kind"] == "drifting"
    # a token whose top-1 token cycles with period 3 orbits even while its state moves on
    tops3 = torch.tensor([[0, 0, (i % 3)] for i in range(r)])
    assert classify(states, tops3, tol=1e-3)[2] == {"kind": "orbiting", "at": None, "period": 3}


def test_latent_trace_carries_verdicts_radius_and_lens(tiny):
    from recurlab.engine import latent_trace

    model, tok = tiny
    tr = latent_trace(model, tok, "12+34=", r=R, radius=True, lens="logit")
    assert tr["lens"] == "logit"
    for t in tr["tokens"]:
        assert t["verdict"]["kind"] in ("settling", "orbiting", "drifting")
        assert t["radius"] is not None and math.isfinite(t["radius"]) and t["radius"] >= 0
    coda = latent_trace(model, tok, "12+34=", r=R)
    assert coda["tokens"][0]["radius"] is None
    assert coda["tokens"][-1]["rel_change"] == tr["tokens"][-1]["rel_change"]  # the states do not depend on the lens
