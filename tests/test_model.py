"""The model's contract: shapes, the core step, truncated backprop, determinism, baselines."""

import pytest
import torch

from recurlab.config import ModelConfig, RunConfig, validate
from recurlab.data import TaskData
from recurlab.depth_sampler import sample_depth
from recurlab.memory import saved_bytes
from recurlab.model import RecurrentLM
from recurlab.tasks import CharVocab

V = len(CharVocab.default())


def small(arch="recurrent", **kw) -> RecurrentLM:
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, vocab_size=V, n_embd=32, n_head=4, n_prelude=1, n_core=2, n_coda=1, matched_r=3, **kw)
    return RecurrentLM(cfg)


def test_shapes_and_param_names_follow_huginn_layout():
    model = small(qk_bias=True)
    idx = torch.randint(0, V, (3, 11))
    out = model(idx, n_no_grad=2, n_grad=2)
    assert out.logits.shape == (3, 11, V)
    names = set(dict(model.named_parameters()))
    for name in ("transformer.wte.weight", "transformer.adapter.weight", "transformer.prelude.0.attn.Wqkv.weight",
                 "transformer.core_block.1.mlp.fc.weight", "transformer.coda.0.norm_4.weight",
                 "transformer.ln_f.weight", "transformer.core_block.0.attn.qk_bias"):
        assert name in names, name
    assert model.transformer.adapter.weight.shape == (32, 64)
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()


def test_r_core_steps_equal_training_forward_with_k0():
    model = small().eval()
    idx = torch.randint(0, V, (2, 9))
    gen = torch.Generator().manual_seed(5)
    ref = model(idx, n_no_grad=5, n_grad=0, generator=gen).logits
    rope = model.rope(torch.arange(9))
    e = model.embed(idx, rope)
    s = model.init_state(e, generator=torch.Generator().manual_seed(5))
    for i in range(5):
        s = model.core_step(s, e, rope, None, i)
    assert torch.allclose(model.decode(s, rope), ref, atol=1e-5)
    # and the split between no-grad and grad iterations does not change the function
    mixed = model(idx, n_no_grad=2, n_grad=3, generator=torch.Generator().manual_seed(5)).logits
    assert torch.allclose(mixed, ref, atol=1e-5)


def test_truncated_backprop_reaches_every_parameter_including_prelude():
    model = small()
    idx = torch.randint(0, V, (2, 8))
    out = model(idx, n_no_grad=6, n_grad=2, targets=torch.randint(0, V, (2, 8)))
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} got no gradient"


def saved_tensor_bytes(model, idx, n_no_grad, n_grad=2):
    return saved_bytes(lambda: model(idx, n_no_grad=n_no_grad, n_grad=n_grad, targets=idx).loss.backward())


def test_training_memory_is_flat_in_no_grad_iterations():
    model = small()
    idx = torch.randint(0, V, (2, 16))
    few, many = saved_tensor_bytes(model, idx, 1), saved_tensor_bytes(model, idx, 30)
    assert few > 0
    assert many == few
    # while gradient iterations do cost memory (the measurement is not blind)
    assert saved_tensor_bytes(model, idx, 0, n_grad=6) > saved_tensor_bytes(model, idx, 0, n_grad=2)


def test_init_scale_zero_is_deterministic_and_random_start_is_not():
    model = small(init_scale=0.0).eval()
    idx = torch.randint(0, V, (2, 7))
    a, b = model(idx, n_no_grad=4, n_grad=0).logits, model(idx, n_no_grad=4, n_grad=0).logits
    assert torch.equal(a, b)
    model.cfg.init_scale = 1.0
    c, d = model(idx, n_no_grad=4, n_grad=0).logits, model(idx, n_no_grad=4, n_grad=0).logits
    assert not torch.equal(c, d)


def test_fixed_depth_baselines_ignore_r_and_matched_has_more_layers():
    same, matched = small("fixed_depth"), small("fixed_depth_matched")
    assert len(same.transformer.core_block) == 2 and len(matched.transformer.core_block) == 6
    assert "adapter" not in same.transformer
    idx = torch.randint(0, V, (1, 6))
    same.eval()
    assert torch.equal(same(idx, n_no_grad=0, n_grad=1).logits, same(idx, n_no_grad=7, n_grad=3).logits)


def test_token_recurrence_passes_the_state_through_vocabulary_space():
    model = small("token_recurrent").eval()
    rope = model.rope(torch.arange(5))
    e = model.embed(torch.randint(0, V, (1, 5)), rope)
    s = model.core_step(torch.zeros_like(e), e, rope, None, 0)
    # every state is a convex combination of embedding rows
    w = model.transformer.wte.weight
    coeffs = torch.linalg.lstsq(w.T, s[0].T).solution
    assert torch.allclose(w.T @ coeffs, s[0].T, atol=1e-4)


def test_depth_samplers():
    cfg = RunConfig()
    cfg.train.r_mean, cfg.train.k = 8, 4
    draws = [sample_depth(cfg.train, step, seed=0) for step in range(2000)]
    totals = [a + b for a, b in draws]
    assert all(b == min(4, a + b) and a == max(a + b - 4, 0) for a, b in draws)
    assert 7.5 < sum(totals) / len(totals) < 10.5  # Poisson(tau)+1 around r_mean + 1
    assert draws == [sample_depth(cfg.train, s, seed=0) for s in range(2000)]  # same on every rank
    assert draws != [sample_depth(cfg.train, s, seed=1) for s in range(2000)]
    cfg.train.sampler = "fixed"
    assert {sample_depth(cfg.train, s, 0) for s in range(50)} == {(4, 4)}
    cfg.train.sampler, cfg.train.r_min, cfg.train.r_max = "uniform", 2, 5
    assert {a + b for a, b in (sample_depth(cfg.train, s, 0) for s in range(300))} == {2, 3, 4, 5}
    cfg.train.sampler, cfg.train.curriculum_steps = "curriculum", 1000
    early = [sum(sample_depth(cfg.train, s, 0)) for s in range(0, 100)]
    late = [sum(sample_depth(cfg.train, s, 0)) for s in range(1000, 1100)]
    assert sum(early) / 100 < 3 < 7 < sum(late) / 100
    assert sample_depth(cfg.train, 5, 0, recurrent=False) == (0, 1)


@pytest.mark.parametrize("arch", ["recurrent", "fixed_depth", "fixed_depth_matched", "token_recurrent"])
def test_each_architecture_learns_a_few_steps(arch):
    torch.manual_seed(0)
    cfg = RunConfig()
    cfg.model.arch, cfg.model.n_embd, cfg.model.n_head = arch, 32, 4
    cfg.data.difficulties, cfg.data.eval_examples = [2], 8
    cfg.train.r_mean, cfg.train.k = 3, 2
    validate(cfg)
    data = TaskData(cfg)
    model = RecurrentLM(cfg.model)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    idx, tgt = data.train_batch(0, 32)
    losses = []
    for step in range(25):
        n_ng, n_g = sample_depth(cfg.train, step, 0, cfg.model.is_recurrent)
        loss = model(idx, n_ng, n_g, tgt).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
