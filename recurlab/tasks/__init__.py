"""Embedded synthetic reasoning tasks: deterministic by seed, a difficulty knob, exact-match scoring.

    from recurlab.tasks import get_task
    task = get_task("addition")
    ex = task.example(difficulty=8, seed=0, index=3)   # Example(prompt="...=", answer="...")
    task.score(ex, "123456789")                         # True / False

All tasks share one character vocabulary (`recurlab.tasks.vocab.CharVocab`), so a model trained
on one task can be prompted with any string over that alphabet.
"""

from recurlab.tasks.base import (
    FEW_HELDOUT, Example, SplitError, Task, UnknownTaskError, check_levels, get_task, levels_problem, task_names,
)
from recurlab.tasks.vocab import CharVocab, VocabError

__all__ = ["FEW_HELDOUT", "CharVocab", "Example", "SplitError", "Task", "UnknownTaskError", "VocabError", "check_levels",
           "get_task", "levels_problem", "task_names"]
