"""Distillation toward a deeper pass: the KL term, the stop-gradient of self-distillation, a teacher run."""

import math

import pytest
import torch

from recurlab.config import ConfigError, load_profile, to_yaml
from recurlab.distill import kl_to_teacher, self_distill_depth
from recurlab.model import RecurrentLM
from recurlab.rundir import RunDir
from recurlab.depth_sampler import sample_depth
from recurlab.train import Trainer
from test_extrapolation_options import GradRecorder

TINY_PERM = ["data.task=permutation4", "data.difficulties=1,2", "data.eval_examples=4", "train.grad_clip=0",
             "train.batch_size=8"]


def trainer(path, *overrides: str) -> Trainer:
    cfg = load_profile("tiny", TINY_PERM + list(overrides))
    return Trainer(RunDir.create(path.parent, path.name, to_yaml(cfg), device="cpu"), cfg, "cpu")


def test_kl_equals_the_sum_over_the_vocabulary_on_target_positions():
    g = torch.Generator().manual_seed(0)
    student = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    teacher = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    targets = torch.tensor([[-100, 1, 2], [-100, -100, 4]])
    # by hand, in plain Python: softmax of each row, then sum p_t * (log p_t - log p_s)
    def softmax(row):
        m = max(row)
        e = [math.exp(v - m) for v in row]
        return [v / sum(e) for v in e]

    kls = []
    for b, t in [(0, 1), (0, 2), (1, 2)]:
        ps, pt = softmax(student[b, t].tolist()), softmax(teacher[b, t].tolist())
        kls.append(sum(q * (math.log(q) - math.log(p)) for p, q in zip(ps, pt)))
    got = kl_to_teacher(student, teacher, targets)
    assert got.item() == pytest.approx(sum(kls) / 3, rel=1e-6)
    assert kl_to_teacher(teacher, teacher, targets).item() == pytest.approx(0.0, abs=1e-7)
    # a student logit moved changes the KL; a position without a target does not
    moved = student.clone()
    moved[0, 0] += 3.0
    assert kl_to_teacher(moved, teacher, targets).item() == pytest.approx(got.item(), abs=1e-12)


def test_self_distillation_gradient_skips_the_deep_pass(tmp_path):
    w, small, large = 0.4, 2, 9
    tr = trainer(tmp_path / "t", f"train.self_distill_weight={w}", f"train.self_distill_small={small}",
                 f"train.self_distill_large={large}")
    start = {n: p.detach().clone() for n, p in tr.model.state_dict().items()}
    tr.optimizer = GradRecorder(tr.model)
    row = tr.train_step(5)
    got = tr.optimizer.grads
    # independently: the standard loss, plus w * KL of the shallow pass toward the deep pass's
    # logits as constants (computed without autograd); the deep pass contributes no gradient
    idx, tgt = tr.data.train_batch(5, 8)
    cfg = tr.cfg.train
    n_ng, n_g = sample_depth(cfg, 5, 0)
    r_small = self_distill_depth(small, 5, 0)
    assert 1 <= r_small <= small
    ref = RecurrentLM(tr.cfg.model)
    ref.load_state_dict(start)
    seed = 5 * 65_537

    def gen():
        return torch.Generator().manual_seed(seed)

    with torch.no_grad():
        deep = ref(idx, large, 0, generator=gen()).logits.clone()
    assert not deep.requires_grad
    ref.zero_grad()
    std = ref(idx, n_ng, n_g, tgt, generator=gen()).loss
    shallow = ref(idx, max(r_small - cfg.k, 0), min(cfg.k, r_small), generator=gen()).logits
    mask = tgt != -100
    log_s = torch.log_softmax(shallow[mask], -1)
    log_t = torch.log_softmax(deep[mask], -1)
    kl = (log_t.exp() * (log_t - log_s)).sum(-1).mean()
    (std + w * kl).backward()
    assert row["loss"] == pytest.approx(std.item(), rel=1e-5)
    assert row["distill_kl"] == pytest.approx(kl.item(), rel=1e-4)
    assert row["distill_kl"] > 0
    for name, p in ref.named_parameters():
        torch.testing.assert_close(got[name], p.grad, rtol=1e-4, atol=1e-6)


def test_student_objective_mixes_cross_entropy_and_kl_to_a_frozen_teacher(tmp_path):
    teacher = trainer(tmp_path / "teacher", "train.max_steps=2", "train.checkpoint_every=2")
    teacher.fit()
    w = 0.7
    st = trainer(tmp_path / "student", f"train.distill_from={teacher.run.path}", "train.distill_r=5",
                 f"train.distill_weight={w}", "model.n_embd=32", "model.n_head=2")
    start = {n: p.detach().clone() for n, p in st.model.state_dict().items()}
    t_weights = {n: p.detach().clone() for n, p in st.teacher.model.state_dict().items()}
    st.optimizer = GradRecorder(st.model)
    row = st.train_step(3)
    # the teacher is frozen: no gradient, weights unchanged
    assert all(p.grad is None for p in st.teacher.model.parameters())
    for n, p in st.teacher.model.state_dict().items():
        assert torch.equal(p, t_weights[n])
    idx, tgt = st.data.train_batch(3, 8)
    seed = 3 * 65_537
    tref = RecurrentLM(teacher.cfg.model)
    tref.load_state_dict(t_weights)
    with torch.no_grad():
        t_logits = tref(idx, 5, 0, generator=torch.Generator().manual_seed(seed)).logits
    ref = RecurrentLM(st.cfg.model)
    ref.load_state_dict(start)
    n_ng, n_g = sample_depth(st.cfg.train, 3, 0)
    out = ref(idx, n_ng, n_g, tgt, generator=torch.Generator().manual_seed(seed))
    kl = kl_to_teacher(out.logits, t_logits, tgt)
    ((1 - w) * out.loss + w * kl).backward()
    assert row["loss"] == pytest.approx(out.loss.item(), rel=1e-5)
    assert row["distill_kl"] == pytest.approx(kl.item(), rel=1e-4)
    for name, p in ref.named_parameters():
        torch.testing.assert_close(st.optimizer.grads[name], p.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("overrides, message", [
    (["train.distill_weight=1.5"], "train.distill_weight must be in [0, 1]"),
    (["train.self_distill_weight=-1"], "train.self_distill_weight must be >= 0"),
    (["train.self_distill_weight=0.5", "train.self_distill_small=8", "train.self_distill_large=4"],
     "must exceed train.self_distill_small"),
    (["train.self_distill_weight=nan"], "train.self_distill_weight"),
])
def test_bad_distillation_values_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_profile("tiny", overrides)


@pytest.mark.slow
def test_distilled_run_trains_stops_resumes_and_sweeps_from_the_cli(cli, runs_dir):
    from test_cli_lifecycle import last_step, set_max_steps, wait_for

    cli("train", "--profile", "tiny", "--runs-dir", runs_dir, "--name", "teacher", "--foreground",
        *TINY_PERM, "train.max_steps=4", "train.checkpoint_every=2", check=True)
    # a student of another width, in a detached worker, with far more steps than it trains before the stop
    cli("train", "--profile", "tiny", "--runs-dir", runs_dir, "--name", "student", *TINY_PERM,
        "model.n_embd=32", "model.n_head=2", f"train.distill_from={runs_dir / 'teacher'}", "train.distill_r=3",
        "train.checkpoint_every=2", "train.eval_every=2", "train.max_steps=1000000", check=True)
    run = RunDir(runs_dir / "student")
    wait_for(lambda: run.latest_checkpoint() is not None, "the student's first checkpoint")
    cli("stop", "student", "--runs-dir", runs_dir, check=True)
    assert run.read_status()["state"] == "stopped"
    set_max_steps(run, last_step(run) + 2)
    cli("resume", "student", "--runs-dir", runs_dir, check=True)
    wait_for(lambda: run.read_status().get("state") == "finished", "the resumed student to finish")
    train_rows = run.read_metrics("train")
    steps = [r["step"] for r in train_rows]
    assert steps == list(range(1, steps[-1] + 1))  # no step lost or repeated across stop and resume
    assert all(math.isfinite(r["distill_kl"]) and r["distill_kl"] >= 0 for r in train_rows)
    res = cli("sweep", "student", "--runs-dir", runs_dir, "--r", "1,2", check=True)
    assert res.returncode == 0
    # a teacher that is not there is refused before the run folder exists
    res = cli("train", "--profile", "tiny", "--runs-dir", runs_dir, "--name", "orphan",
              f"train.distill_from={runs_dir / 'nothing'}")
    assert res.returncode == 2 and res.stderr.startswith("error: train.distill_from:"), res.stderr
    assert not (runs_dir / "orphan").exists()
