"""Training options for extrapolation: depth tied to the task level, progressive loss, contraction penalty."""

import numpy as np
import pytest
import torch

from recurlab.config import ConfigError, load_profile
from recurlab.depth_sampler import progressive_split, sample_depth
from recurlab.model import RecurrentLM
from recurlab.rundir import RunDir
from recurlab.train import Trainer

TINY_PERM = ["data.task=permutation4", "data.difficulties=1,2,3", "data.eval_examples=4", "train.grad_clip=0"]


def trainer(tmp_path, *overrides: str) -> Trainer:
    cfg = load_profile("tiny", TINY_PERM + list(overrides))
    from recurlab.config import to_yaml

    return Trainer(RunDir.create(tmp_path, "t", to_yaml(cfg), device="cpu"), cfg, "cpu")


class GradRecorder:
    """Stands in for the optimizer: keeps the gradients train_step produced instead of applying them."""

    def __init__(self, model):
        self.model, self.param_groups, self.grads = model, [{}], None

    def step(self):
        self.grads = {n: p.grad.clone() for n, p in self.model.named_parameters() if p.grad is not None}

    def zero_grad(self, set_to_none=True):
        self.model.zero_grad(set_to_none=set_to_none)


def test_depth_per_level_scales_the_sampled_depth_with_the_level():
    cfg = load_profile("tiny", TINY_PERM + ["train.depth_per_level=2", "train.sampler=fixed"])
    t = cfg.train
    assert [sum(sample_depth(t, 7, 0, level=lv)) for lv in (1, 2, 3, 5)] == [2, 4, 6, 10]
    assert sample_depth(t, 7, 0, level=3) == (6 - t.k, t.k)  # truncated backprop keeps its split
    t.sampler = "lognormal_poisson"
    means = [np.mean([sum(sample_depth(t, s, 0, level=lv)) for s in range(3000)]) for lv in (1, 3, 6)]
    # Poisson(tau) + 1 with E[tau] = 2 * level
    for mean, level in zip(means, (1, 3, 6)):
        assert abs(mean - (2 * level + 1)) < 0.35, (mean, level)
    # deterministic per (seed, step, level), so every rank and every resume draws the same
    assert [sample_depth(t, s, 0, level=3) for s in range(50)] == [sample_depth(t, s, 0, level=3) for s in range(50)]
    assert [sample_depth(t, s, 0, level=3) for s in range(50)] != [sample_depth(t, s, 0, level=4) for s in range(50)]
    # off (the default): the level is ignored and the draw is today's
    t.depth_per_level = 0
    assert [sample_depth(t, s, 0, level=6) for s in range(50)] == [sample_depth(t, s, 0) for s in range(50)]


@pytest.mark.parametrize(("overrides", "message"), [
    (["train.depth_per_level=2", "train.sampler=uniform"], "not uniform"),
    (["train.depth_per_level=-1"], "depth_per_level must be >= 0"),
    (["train.progressive_alpha=1.5"], "progressive_alpha must be in [0, 1]"),
    (["train.jacobian_penalty=0.1", "model.arch=fixed_depth"], "need a recurrent model"),
    (["train.jacobian_eps=0"], "jacobian_eps must be > 0"),
])
def test_bad_option_values_are_refused_in_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_profile("tiny", TINY_PERM + overrides)


def test_depth_per_level_needs_task_levels():
    with pytest.raises(ConfigError, match="needs an embedded task"):
        load_profile("tiny", ["data.source=local", "data.name=/tmp/x.txt", "train.depth_per_level=2"])


def test_per_level_step_runs_each_level_at_its_own_depth(tmp_path):
    tr = trainer(tmp_path, "train.depth_per_level=2", "train.sampler=fixed", "train.batch_size=24")
    pieces = tr.pieces(3, tr.global_batch_slices())
    examples = tr.data.train_examples(3, 24)
    levels = sorted({ex.difficulty for ex in examples})
    assert [p[4] for p in pieces] == levels
    for idx, tgt, n_ng, n_g, level, _ in pieces:
        assert n_ng + n_g == 2 * level
        # the piece holds exactly this level's examples of the step's batch, prompt lengths included
        n = sum(ex.difficulty == level for ex in examples)
        assert idx.shape[0] == n and idx.shape[1] == 5 * level + 5  # <bos>, k permutations and '.'s and '=', answer
    assert sum(p[0].shape[0] for p in pieces) == 24
    # off: one piece per micro-batch at the step's depth, as before
    tr2 = trainer(tmp_path / "b", "train.batch_size=24")
    (only,) = tr2.pieces(3, tr2.global_batch_slices())
    assert only[2:4] == sample_depth(tr2.cfg.train, 3, 0, True)


def test_progressive_loss_gradient_is_the_alpha_mix_of_both_losses(tmp_path):
    alpha = 0.3
    tr = trainer(tmp_path, f"train.progressive_alpha={alpha}", "train.batch_size=8")
    model = tr.model
    start = {n: p.detach().clone() for n, p in model.state_dict().items()}
    tr.optimizer = GradRecorder(model)
    row = tr.train_step(5)
    got = tr.optimizer.grads
    # independently: both losses on the same batch and latent start, differentiated separately
    idx, tgt = tr.data.train_batch(5, 8)
    n_ng, n_g = sample_depth(tr.cfg.train, 5, 0)
    n, m = progressive_split(n_ng + n_g, tr.cfg.train.k, 5, 0)
    assert 0 <= n < n_ng + n_g and 1 <= m <= min(tr.cfg.train.k, n_ng + n_g - n)
    ref = RecurrentLM(tr.cfg.model)
    ref.load_state_dict(start)

    def grads(n_no_grad, n_grad):
        ref.zero_grad()
        gen = torch.Generator().manual_seed(5 * 65_537)
        loss = ref(idx, n_no_grad, n_grad, tgt, generator=gen).loss
        loss.backward()
        return loss.item(), {k: p.grad.clone() for k, p in ref.named_parameters()}

    std_loss, g_std = grads(n_ng, n_g)
    prog_loss, g_prog = grads(n, m)
    assert row["loss"] == pytest.approx(std_loss, rel=1e-5)
    assert row["progressive_loss"] == pytest.approx(prog_loss, rel=1e-5)
    for name, g in got.items():
        torch.testing.assert_close(g, (1 - alpha) * g_std[name] + alpha * g_prog[name], rtol=1e-4, atol=1e-6)


def test_progressive_split_covers_partial_starts_and_short_finishes():
    draws = [progressive_split(10, 4, s, 0) for s in range(2000)]
    assert {n for n, _ in draws} == set(range(10))
    assert {m for _, m in draws} == {1, 2, 3, 4}
    assert all(n + m <= 10 for n, m in draws)
    assert draws == [progressive_split(10, 4, s, 0) for s in range(2000)]


def test_gain_estimates_the_jacobian_of_one_core_step():
    torch.manual_seed(0)
    cfg = load_profile("tiny", TINY_PERM).model
    model = RecurrentLM(cfg).eval()
    idx = torch.tensor([[3]])  # one token: the core step is a map R^d -> R^d
    rope = model.rope(torch.arange(1))
    e = model.embed(idx, rope)
    s0 = model.init_state(e, generator=torch.Generator().manual_seed(1))
    jac = torch.autograd.functional.jacobian(lambda s: model.core_step(s, e, rope), s0).reshape(cfg.n_embd, cfg.n_embd)
    expected = float(jac.pow(2).sum()) / cfg.n_embd  # E ||J d||^2 / ||d||^2 over random directions d
    # the model's estimate, averaged over many random directions (a batch of copies of the token)
    B = 4000
    rope_b = model.rope(torch.arange(1))
    eb, sb = e.expand(B, 1, cfg.n_embd).contiguous(), s0.expand(B, 1, cfg.n_embd).contiguous()
    out = model.core_step(sb, eb, rope_b)
    gain = model._step_gain(sb, out, eb, rope_b, 0, 1e-3, torch.Generator().manual_seed(2))
    assert float(gain.detach()) == pytest.approx(expected, rel=0.06)


def test_contraction_penalty_lowers_the_measured_gain(tmp_path):
    tr = trainer(tmp_path, "train.jacobian_penalty=50", "train.lr=3e-3", "train.warmup_steps=0",
                 "train.batch_size=16", "train.schedule=constant")
    gains = [tr.train_step(s)["gain"] for s in range(1, 31)]
    assert np.mean(gains[-5:]) < 0.5 * np.mean(gains[:5]), gains
    tr2 = trainer(tmp_path / "off", "train.batch_size=16")
    assert "gain" not in tr2.train_step(1)  # off: not measured, no extra core step


def test_init_from_starts_from_another_runs_weights_with_a_fresh_optimizer(tmp_path):
    from safetensors.torch import load_file
    from typer.testing import CliRunner

    import recurlab.cli.runs  # noqa: F401
    from recurlab.cli.app import app

    src = trainer(tmp_path / "src", "train.max_steps=3", "train.checkpoint_every=3")
    src.fit()
    source = load_file(str(src.run.latest_checkpoint().path / "model.safetensors"))
    # lr ~ 0: one step leaves the weights where init_from put them, and the step count starts at 0
    warm = trainer(tmp_path / "warm", f"train.init_from={src.run.path}", "train.max_steps=1", "train.lr=1e-30",
                   "train.checkpoint_every=1")
    warm.fit()
    assert warm.run.latest_checkpoint().step == 1
    got = load_file(str(warm.run.latest_checkpoint().path / "model.safetensors"))
    for name, tensor in source.items():
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=1e-6)
    cold = trainer(tmp_path / "cold", "train.max_steps=1", "train.lr=1e-30", "train.checkpoint_every=1")
    cold.fit()
    cold_w = load_file(str(cold.run.latest_checkpoint().path / "model.safetensors"))
    assert not torch.equal(cold_w["transformer.adapter.weight"], source["transformer.adapter.weight"])
    # a path without a checkpoint is refused before any run directory exists
    runs = tmp_path / "runs"
    res = CliRunner().invoke(app, ["train", "--profile", "tiny", "--runs-dir", str(runs), "--name", "x",
                                   f"train.init_from={tmp_path / 'nothing'}"])
    assert res.exit_code == 2 and res.output.startswith("error: train.init_from:"), res.output
    assert not (runs / "x").exists()


def test_identity_padding_lengthens_training_prompts_without_changing_answers():
    from recurlab.data import TaskData
    from recurlab.tasks import get_task

    # padded to 8 permutations, a level-1 prompt is 45 tokens: more than tiny's block_size of 32
    cfg = load_profile("tiny", TINY_PERM + ["data.identity_pad_to=8", "model.block_size=64"])
    data, task = TaskData(cfg), get_task("permutation4")
    examples = [ex for step in range(20) for ex in data.train_examples(step, 16)]
    lengths = set()
    for ex in examples:
        perms = ex.prompt.rstrip("=").split(".")
        real = [p for p in perms if p != "0123"]
        assert ex.difficulty <= len(perms) <= 8 and len(real) <= ex.difficulty
        assert task.solve(ex.prompt) == ex.answer
        lengths.add(len(perms) - ex.difficulty)
    assert lengths == set(range(8))  # from unpadded to 7 identities (level 1 padded to 8)
    plain = TaskData(load_profile("tiny", TINY_PERM))
    assert all(len(ex.prompt.split(".")) == ex.difficulty for ex in plain.train_examples(3, 16))
    with pytest.raises(ConfigError, match="permutation tasks"):
        load_profile("tiny", ["data.identity_pad_to=8"])


def test_length_probe_without_padding_is_the_sweeps_accuracy(tmp_path):
    from recurlab.length_probe import padded, probe
    from recurlab.tasks import get_task

    task = get_task("permutation4")
    base = task.heldout(3, 20, 0)
    for ex, longer in zip(base, padded(task, base, 4)):
        assert task.solve(longer.prompt) == ex.answer == longer.answer  # identities change nothing
        assert longer.prompt.endswith(ex.prompt) and longer.prompt.count(".") == ex.prompt.count(".") + 4

    tr = trainer(tmp_path, "train.max_steps=3", "train.checkpoint_every=3")
    tr.fit()
    rows = probe(str(tr.run.path), level=2, pads=[0, 3], rs=[2], examples=4)
    assert [(r["pad"], r["r"], r["examples"]) for r in rows] == [(0, 2, 4), (3, 2, 4)]
    from recurlab.heldout import evaluate_heldout

    expected = evaluate_heldout(tr.raw_model, tr.data, [2], "cpu")[0]["acc@2"]
    assert rows[0]["acc"] == expected
