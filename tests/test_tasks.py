"""Task generators and scorers, with a hand-checked example per task."""

import pytest
import torch

from recurlab.config import RunConfig, validate
from recurlab.data import IGNORE, TaskData, encode_examples
from recurlab.engine import evaluate
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

    assert evaluate(Oracle(False), data, [1], "cpu", batch_size=16)[0]["acc@2"] == 1.0
    assert evaluate(Oracle(True), data, [1], "cpu", batch_size=16)[0]["acc@2"] == 0.0
