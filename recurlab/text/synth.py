"""A generated text corpus for tests and benchmarks: varied, deterministic, no downloads.

    paths = write_corpus(tmp / "corpus", n_bytes=400_000, files=3, fmt="txt")   # or "jsonl"
    text = make_document(random.Random(0))

Documents are short math word problems with worked solutions, lists and prose in a few
languages: numbers, words, punctuation, tabs and non-ASCII characters, so that a tokenizer's
round trip is actually tested. Paragraphs (documents) are separated by blank lines in .txt files.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

NAMES = ["Ada", "Bruno", "Chloé", "Dmitri", "Eun-ji", "Farah", "Gustav", "Hiroshi", "Inés", "Jamal", "Zoë", "Łukasz"]
ITEMS = ["apples", "marbles", "books", "coins", "pencils", "tickets", "stamps", "seeds", "bricks", "cups"]
PLACES = ["Köln", "São Paulo", "Zürich", "Kraków", "Reykjavík", "Mexico City", "Nairobi", "Tōkyō", "Montréal"]
WORDS = ("the of and to in is was for on are with as his they be at one have this from or had by word but what some "
         "we can out other were all there when up use your how said an each she which do their time if will way about "
         "many then them write would like so these her long make thing see him two has look more day could go come "
         "did number sound no most people my over know water than call first who may down side been now find").split()
UNICODE = ["→", "≈", "✓", "€", "°C", "½", "π", "—", "…", "naïve", "façade", "Straße", "日本語", "😀", "Ω"]


def _problem(rng: random.Random) -> str:
    a, b, c = rng.randint(2, 999), rng.randint(2, 99), rng.randint(2, 12)
    who, what, where = rng.choice(NAMES), rng.choice(ITEMS), rng.choice(PLACES)
    total = a + b * c
    return (f"Question: {who} has {a} {what} in {where}. Each of {c} friends gives {who} {b} more. "
            f"How many {what} does {who} have now?\n"
            f"Solution: The friends give {c} × {b} = {b * c} {what}. Then {a} + {b * c} = {total}.\n"
            f"The answer is \\boxed{{{total}}}.")


def _prose(rng: random.Random) -> str:
    sentences = []
    for _ in range(rng.randint(2, 6)):
        words = [rng.choice(WORDS) for _ in range(rng.randint(5, 16))]
        if rng.random() < 0.4:
            words.insert(rng.randrange(len(words)), rng.choice(UNICODE))
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words)), f"{rng.uniform(-50, 50):.2f}")
        s = " ".join(words)
        sentences.append(s[0].upper() + s[1:] + rng.choice([".", "!", "?", ";", "..."]))
    return " ".join(sentences)


def _listing(rng: random.Random) -> str:
    lines = [f"Inventory of {rng.choice(PLACES)} ({rng.randint(1990, 2030)}):"]
    for i in range(rng.randint(2, 5)):
        lines.append(f"\t{i + 1}) {rng.choice(ITEMS)}: {rng.randint(0, 10_000):,} @ {rng.uniform(0, 99):.2f} €")
    return "\n".join(lines)


def make_document(rng: random.Random) -> str:
    return rng.choice([_problem, _prose, _listing, _problem])(rng)


def write_corpus(folder: str | Path, n_bytes: int = 400_000, files: int = 2, fmt: str = "txt", seed: int = 0) -> list[Path]:
    """Write about `n_bytes` of documents into `files` files (.txt paragraphs or .jsonl {"text": ...})."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paths = []
    per_file = n_bytes // files
    for f in range(files):
        docs, size = [], 0
        while size < per_file:
            doc = make_document(rng)
            docs.append(doc)
            size += len(doc.encode()) + 2
        path = folder / f"part-{f:03d}.{fmt}"
        if fmt == "jsonl":
            path.write_text("".join(json.dumps({"text": d, "id": i}, ensure_ascii=False) + "\n" for i, d in enumerate(docs)))
        else:
            path.write_text("\n\n".join(docs) + "\n")
        paths.append(path)
    return paths
