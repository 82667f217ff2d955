"""Task registry and the tasks themselves.

Each task maps (difficulty, seed, index) to one Example deterministically. The held-out split is
fixed by a hash of the prompt (1 in 10 prompts), so train and held-out never share an instance.

A held-out set holds distinct prompts, drawn without replacement. Easy levels have few: level 1
of `permutation4` has 24 prompts, of which exactly one is held out, so `heldout(1, 200)` returns
one example, not 200 copies of it; `heldout_count` says how many a level holds, and a level with
none (level 1 of `permutation3`) is refused by `check_levels`.

    task.heldout(difficulty=2, n=200)          # distinct held-out examples, at most n
    task.heldout_count(1)                      # 1 (None: too many prompts to count)
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import random
from dataclasses import dataclass

from recurlab.errors import SplitError, UnknownTaskError  # re-exported by recurlab.tasks

HELDOUT_MOD = 10
MAX_SPLIT_TRIES = 200
# levels with at most this many prompts are enumerated, so their held-out sets are exact
ENUMERATE_LIMIT = 50_000
# fewer distinct held-out prompts than this and a level's accuracy says little: reports flag it
FEW_HELDOUT = 20




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
    max_difficulty: int | None = None  # the hardest level the task can write (None: no limit)

    def example_length(self, difficulty: int) -> int:
        """Characters of prompt + answer at a level: the same for every example of it, computed
        without writing one (level 100000 of addition would be a 100000-digit number)."""
        raise NotImplementedError

    def generate(self, rng: random.Random, difficulty: int) -> Example:
        raise NotImplementedError

    def solve(self, prompt: str) -> str:
        """The exact answer for a prompt of this task (used for scoring and tests)."""
        raise NotImplementedError

    def all_prompts(self, difficulty: int) -> list[str] | None:
        """Every prompt of a level, when the level is small enough to list (None otherwise)."""
        return None

    def example(self, difficulty: int, seed: int, index: int, split: str = "train") -> Example:
        """The `index`-th example of a split; identical for identical arguments."""
        rng = random.Random(f"{self.name}/{split}/{seed}/{difficulty}/{index}")
        for _ in range(MAX_SPLIT_TRIES):
            ex = self.generate(rng, difficulty)
            if _is_heldout(ex.prompt) == (split == "heldout"):
                return ex
        # never an instance of the other split: that would leak held-out data into training, or
        # measure training data as held-out
        raise SplitError(f"level {difficulty} of {self.name} has no {split} instance in {MAX_SPLIT_TRIES} draws; "
                         "choose other data.difficulties")

    def heldout_count(self, difficulty: int) -> int | None:
        """Distinct held-out prompts of a level, or None when the level is too large to count."""
        return _heldout_count(self, difficulty)

    def heldout(self, difficulty: int, n: int, seed: int = 0) -> list[Example]:
        """Up to `n` distinct held-out examples, in a fixed order for (difficulty, seed); fewer
        when the level holds fewer."""
        prompts = self.all_prompts(difficulty)
        if prompts is not None:
            held = [p for p in prompts if _is_heldout(p)]
            random.Random(f"{self.name}/heldout/{seed}/{difficulty}").shuffle(held)
            return [Example(p, self.solve(p), difficulty) for p in held[:n]]
        out, seen, index, stale = [], set(), 0, 0
        # a large level: draw until n distinct, or until draws stop finding new prompts
        while len(out) < n and stale < 20 * n + 1000:
            ex = self.example(difficulty, seed, index, "heldout")
            index += 1
            if ex.prompt in seen:
                stale += 1
                continue
            seen.add(ex.prompt)
            out.append(ex)
            stale = 0
        return out

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

    def example_length(self, difficulty):
        return (2 * difficulty + 2) + (difficulty + 1)  # a+b= and the n+1 digit sum

    def solve(self, prompt):
        a, b = prompt.rstrip("=").split("+")
        return f"{int(a) + int(b):0{len(a) + 1}d}"

    def all_prompts(self, difficulty):
        n = difficulty
        if 100**n > ENUMERATE_LIMIT:
            return None
        return [f"{a:0{n}d}+{b:0{n}d}=" for a in range(10**n) for b in range(10**n)]


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

    def example_length(self, difficulty):
        return difficulty * (self.n + 1) + self.n  # k permutations joined by '.', '=', the answer

    def all_prompts(self, difficulty):
        perms = ["".join(map(str, p)) for p in itertools.permutations(range(self.n))]
        if len(perms) ** difficulty > ENUMERATE_LIMIT:
            return None
        return [".".join(c) + "=" for c in itertools.product(perms, repeat=difficulty)]

    def pad_with_identities(self, example: Example, total: int, rng: random.Random) -> Example:
        """The same problem with identity permutations inserted at random places until it has
        `total` permutations: longer, same answer, same number of non-trivial steps. A padded
        prompt that falls in the held-out split is returned unpadded."""
        perms = example.prompt.rstrip("=").split(".")
        identity = "".join(map(str, range(self.n)))
        for _ in range(max(total - len(perms), 0)):
            perms.insert(rng.randrange(len(perms) + 1), identity)
        prompt = ".".join(perms) + "="
        if _is_heldout(prompt):
            return example
        return Example(prompt, example.answer, example.difficulty)

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
    max_difficulty = 13  # two chains of k distinct letters each

    def example_length(self, difficulty):
        return 2 * difficulty * 4 - 1 + 4 + 1  # 2k "x=y" joined by ';', then ";?x=", the digit

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


@functools.lru_cache(maxsize=256)
def _heldout_count(task: Task, difficulty: int) -> int | None:
    prompts = task.all_prompts(difficulty)
    return None if prompts is None else sum(_is_heldout(p) for p in prompts)


def check_levels(task: Task, difficulties) -> None:
    """Refuse levels with no held-out prompt: their "held-out" accuracy would be training data."""
    for d in difficulties:
        count = task.heldout_count(d)
        if count == 0:
            total = len(task.all_prompts(d))
            raise SplitError(f"level {d} of {task.name} has no held-out prompt (all {total} of its prompts are training "
                             "data), so it cannot be evaluated; drop it from the difficulties")


def levels_problem(task: Task, difficulties, block_size: int, pad_to: int = 0) -> str | None:
    """Why these levels cannot be trained or evaluated by a model of `block_size` tokens, or None:
    a level beyond what the task can write, or a sequence (<bos>, prompt, answer; identity padding
    up to `pad_to` permutations) longer than the context."""
    for d in sorted(difficulties):
        if task.max_difficulty is not None and d > task.max_difficulty:
            return f"level {d} of {task.name}: the task has levels 1 to {task.max_difficulty}"
    for d in sorted(difficulties):
        need = 1 + task.example_length(max(d, pad_to))
        if need > block_size:
            return (f"level {d} of {task.name} needs {need} tokens but the model's block_size is {block_size}; "
                    "choose lower levels (or a larger model.block_size)")
    return None


def task_names() -> list[str]:
    return sorted(TASKS)


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownTaskError(f"unknown task {name!r}: available are {', '.join(task_names())}") from None
