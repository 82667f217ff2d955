"""Task registry and the tasks themselves.

Each task maps (difficulty, seed, index) to one Example deterministically. The held-out split is
fixed by a hash of the prompt (1 in 10 prompts), so train and held-out never share an instance.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

HELDOUT_MOD = 10
MAX_SPLIT_TRIES = 200


class UnknownTaskError(ValueError):
    pass


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: str
    difficulty: int


def _is_heldout(prompt: str) -> bool:
    return int(hashlib.blake2b(prompt.encode(), digest_size=4).hexdigest(), 16) % HELDOUT_MOD == 0


class Task:
    name = ""
    description = ""

    def generate(self, rng: random.Random, difficulty: int) -> Example:
        raise NotImplementedError

    def solve(self, prompt: str) -> str:
        """The exact answer for a prompt of this task (used for scoring and tests)."""
        raise NotImplementedError

    def example(self, difficulty: int, seed: int, index: int, split: str = "train") -> Example:
        """The `index`-th example of a split; identical for identical arguments."""
        rng = random.Random(f"{self.name}/{split}/{seed}/{difficulty}/{index}")
        for _ in range(MAX_SPLIT_TRIES):
            ex = self.generate(rng, difficulty)
            if _is_heldout(ex.prompt) == (split == "heldout"):
                return ex
        # a level with only a handful of distinct instances cannot be split; it is memorized anyway
        return ex

    def heldout(self, difficulty: int, n: int, seed: int = 0) -> list[Example]:
        return [self.example(difficulty, seed, i, "heldout") for i in range(n)]

    def score(self, example: Example, predicted: str) -> bool:
        return predicted.strip() == example.answer


class MSBAddition(Task):
    """a+b with n-digit operands; the sum is written most-significant digit first, zero-padded
    to n+1 digits, so every answer digit depends on a carry chain the output order hides."""

    name = "addition"
    description = "n-digit addition, sum most-significant digit first (difficulty = n)"

    def generate(self, rng, difficulty):
        n = difficulty
        a, b = rng.randrange(10**n), rng.randrange(10**n)
        prompt = f"{a:0{n}d}+{b:0{n}d}="
        return Example(prompt, self.solve(prompt), n)

    def solve(self, prompt):
        a, b = prompt.rstrip("=").split("+")
        return f"{int(a) + int(b):0{len(a) + 1}d}"


class PermutationComposition(Task):
    """k permutations of 0..n-1 applied in order; the answer is where each element ends up.
    Composing permutations of 5 elements is a word problem no fixed-depth circuit solves for
    growing k, so harder levels need sequential steps; fewer elements learn faster."""

    def __init__(self, n: int = 5):
        self.n = n
        self.name = "permutation" if n == 5 else f"permutation{n}"
        self.description = f"composition of k permutations of {n} elements (difficulty = k)"

    def generate(self, rng, difficulty):
        perms = []
        for _ in range(difficulty):
            p = list(range(self.n))
            rng.shuffle(p)
            perms.append("".join(map(str, p)))
        prompt = ".".join(perms) + "="
        return Example(prompt, self.solve(prompt), difficulty)

    def solve(self, prompt):
        perms = prompt.rstrip("=").split(".")
        out = []
        for i in range(len(perms[0])):
            x = i
            for p in perms:
                x = int(p[x])
            out.append(str(x))
        return "".join(out)


class VariableChain(Task):
    """Two chains of k assignments each, interleaved in shuffled order (`c=b;d=4;a=7;b=a;e=d;`),
    then a query for the last variable of one chain; the answer is the digit at that chain's
    root (difficulty = k hops). The second chain, rooted at another digit, removes the shortcut
    of answering with the only digit in the prompt."""

    name = "chain"
    description = "multi-hop variable lookup through k shuffled assignments, with a distractor chain"

    def generate(self, rng, difficulty):
        letters = rng.sample("abcdefghijklmnopqrstuvwxyz", 2 * difficulty)
        roots = rng.sample(range(10), 2)
        stmts = []
        for names, root in ((letters[:difficulty], roots[0]), (letters[difficulty:], roots[1])):
            stmts += [f"{names[0]}={root}"] + [f"{names[i]}={names[i - 1]}" for i in range(1, difficulty)]
        rng.shuffle(stmts)
        prompt = ";".join(stmts) + f";?{letters[difficulty - 1]}="
        return Example(prompt, self.solve(prompt), difficulty)

    def solve(self, prompt):
        body, query = prompt.rstrip("=").split(";?")
        env = dict(s.split("=") for s in body.split(";"))
        x = query
        while not env[x].isdigit():
            x = env[x]
        return env[x]


TASKS = {t.name: t for t in (MSBAddition(), PermutationComposition(5), PermutationComposition(4),
                             PermutationComposition(3), VariableChain())}


def task_names() -> list[str]:
    return sorted(TASKS)


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownTaskError(f"unknown task {name!r}: available are {', '.join(task_names())}") from None
