"""Task generators and scorers, with a hand-checked example per task."""

import pytest
import torch

from recurlab.config import RunConfig, validate
from recurlab.data import IGNORE, TaskData, encode_examples
from recurlab.heldout import evaluate_heldout
from recurlab.tasks import CharVocab, Example, VocabError, get_task, task_names
from recurlab.tasks.base import UnknownTaskError


def test_hand_checked_examples():
    add = get_task("addition")
    assert add.solve("0457+0968=") == "01425"  # 457 + 968 = 1425, zero-padded to n+1 digits
    assert add.solve("99+99=") == "198"
    perm = get_task("permutation")
    # 0->1->2, 1->2->0, 2->0->1 (with identity on 3, 4 in both)
    assert perm.solve("12034.12034=") == "20134"
    assert perm.solve("01234=") == "01234"
    chain = get_task("chain")
    assert chain.solve("c=b;a=7;b=a;?c=") == "7"
    assert chain.solve("x=3;?x=") == "3"


@pytest.mark.parametrize("name", task_names())
def test_generators_are_deterministic_correct_and_split(name):
    task = get_task(name)
    for d in (2, 3, 5):
        a = [task.example(d, seed=0, index=i) for i in range(30)]
        assert a == [task.example(d, seed=0, index=i) for i in range(30)]
        assert a != [task.example(d, seed=1, index=i) for i in range(30)]
        for ex in a:
            assert ex.answer == task.solve(ex.prompt) and ex.difficulty == d
            assert task.score(ex, ex.answer) and not task.score(ex, ex.answer[:-1] + "x")
        held = {ex.prompt for ex in task.heldout(d, 30)}
        train = {task.example(d, 0, i).prompt for i in range(300)}
        assert not held & train


def test_difficulty_grows_the_instance():
    add, perm = get_task("addition"), get_task("permutation")
    assert len(add.example(8, 0, 0).prompt) > len(add.example(2, 0, 0).prompt)
    assert perm.example(4, 0, 0).prompt.count(".") == 3


def test_vocab_round_trip_and_unknown_characters():
    v = CharVocab.default()
    assert v.decode(v.encode("12+34=046")) == "12+34=046"
    with pytest.raises(VocabError, match="not in this model's vocabulary"):
        v.encode("12#4")
    with pytest.raises(UnknownTaskError):
        get_task("sorting")


def test_only_answer_positions_are_supervised():
    v = CharVocab.default()
    idx, tgt = encode_examples([Example("12+34=", "046", 2), Example("1+2=", "03", 1)], v)
    assert idx.shape == tgt.shape == (2, 10)
    row = tgt[0].tolist()
    # <bos>12+34= predicts nothing until '=' ; then 0,4,6,<eos>
    assert row[:6] == [IGNORE] * 6
    assert v.decode(row[6:9]) == "046" and row[9] == v.eos_id
    assert (tgt[1] != IGNORE).sum() == 3  # "03" + <eos>


def test_exact_match_uses_every_answer_position():
    cfg = RunConfig()
    cfg.data.difficulties, cfg.data.eval_examples = [2], 16
    validate(cfg)
    data = TaskData(cfg)

    class Oracle(torch.nn.Module):
        """Predicts the right answer except, optionally, at one answer position."""

        def __init__(self, break_last: bool):
            super().__init__()
            self.break_last = break_last

        def forward(self, idx, n_no_grad=0, n_grad=1, generator=None, **kw):
            exs = data.heldout(2)
            _, tgt = encode_examples(exs[: idx.shape[0]], data.tokenizer)
            logits = torch.zeros(*idx.shape, len(data.tokenizer))
            safe = tgt.clamp(min=0)
            if self.break_last:
                safe[:, -1] = (safe[:, -1] + 1) % len(data.tokenizer)
            logits.scatter_(2, safe.unsqueeze(-1), 10.0)
            return type("O", (), {"logits": logits})

    assert evaluate_heldout(Oracle(False), data, [1], "cpu", batch_size=16)[0]["acc@2"] == 1.0
    assert evaluate_heldout(Oracle(True), data, [1], "cpu", batch_size=16)[0]["acc@2"] == 0.0


# ---- held-out sets: distinct, without replacement, counted ------------------------------------

def test_heldout_sets_are_distinct_heldout_prompts_counted_exactly():
    import hashlib
    import itertools

    perm4 = get_task("permutation4")
    perms = ["".join(map(str, p)) for p in itertools.permutations(range(4))]
    for level in (1, 2):
        # an independent count: every prompt of the level, hashed the way the split is defined
        everything = [".".join(c) + "=" for c in itertools.product(perms, repeat=level)]
        expected = {p for p in everything if int(hashlib.blake2b(p.encode(), digest_size=4).hexdigest(), 16) % 10 == 0}
        held = perm4.heldout(level, 200)
        assert len(held) == len({ex.prompt for ex in held}) == len(expected) == perm4.heldout_count(level)
        assert {ex.prompt for ex in held} == expected
    assert [ex.prompt for ex in perm4.heldout(1, 200)] == ["2103="]  # one prompt, not 200 copies of it
    for name in task_names():
        task = get_task(name)
        for level in (1, 2, 3, 4):
            count = task.heldout_count(level)
            if count == 0:
                continue
            held = task.heldout(level, 150)
            assert len(held) == len({ex.prompt for ex in held}) == min(150, count if count is not None else 150)
            assert task.heldout(level, 150) == held  # deterministic


def test_a_level_without_heldout_prompts_is_refused_not_measured_on_training_data():
    from recurlab.tasks import SplitError, check_levels

    perm3 = get_task("permutation3")
    assert perm3.heldout_count(1) == 0 and perm3.heldout(1, 200) == []
    with pytest.raises(SplitError, match="level 1 of permutation3 has no held-out prompt"):
        check_levels(perm3, [1, 2])
    with pytest.raises(SplitError, match="no heldout instance"):
        perm3.example(1, 0, 0, "heldout")  # never a training instance in its place


def test_profile_with_a_level_without_heldout_prompts_is_refused_by_the_cli(cli, tmp_path):
    res = cli("train", "--profile", "tiny", "--runs-dir", tmp_path / "runs", "data.task=permutation3",
              "data.difficulties=1,2", "--name", "p3")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        "error: data.task: level 1 of permutation3 has no held-out prompt (all 6 of its prompts are training data), "
        "so it cannot be evaluated; drop it from the difficulties"]
    assert not (tmp_path / "runs" / "p3").exists()


def test_inspector_examples_are_distinct():
    from types import SimpleNamespace

    from recurlab.config import load_profile
    from recurlab.tui.model_cache import heldout_examples

    cfg = load_profile("cpu")
    pairs = heldout_examples(SimpleNamespace(cfg=cfg), 6)
    assert len(pairs) == len(set(pairs)) == 1 + 6 + 6 + 6  # level 1 holds one held-out prompt
