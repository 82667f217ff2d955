"""Saved wavefronts of the parallel sampler: one JSON file per generation, never overwritten.

    path = save_wavefront(run_path, result, row=0)       # RUN/wavefronts/wavefront-20261130-161502.json
    for path in list_wavefronts(run_path): ...           # newest first
    wf = load_wavefront(path)                            # wf["steps"][t]: first, iterations, tokens, frozen

Schema (version WAVEFRONT_VERSION):

    version, kind ("wavefront"), created (unix time), prompt, r, sampler (the spec string)
    token_ids, token_texts   the committed tokens, the stop token included when one ended the row
    frozen_at                per committed token, the outer step at which it froze
    iterations               per committed token, the core iterations it had
    steps                    per outer step: {"step", "first" (generated index of the wavefront's
                             first position), "iterations" [w], "tokens" [w] (each position's
                             predicted token), "texts" [w], "frozen" (positions frozen at this step)}
    summary                  outer_steps, core_passes, passes_per_token, speedup_in_passes, tokens_per_s
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from recurlab.rundir import write_new

WAVEFRONT_VERSION = 1


def wavefront_record(result, tokenizer, row: int = 0) -> dict:
    """The JSON-able wavefront of one row of a parallel GenerationResult."""
    p = result.parallel
    if not p:
        raise ValueError("this generation did not use the parallel sampler: it has no wavefront")
    info = p["rows"][row]
    text = lambda i: tokenizer.decode([i])  # noqa: E731
    return {
        "version": WAVEFRONT_VERSION, "kind": "wavefront", "created": time.time(),
        "prompt": result.prompts[row], "r": p["r"], "sampler": p["config"]["spec"],
        "token_ids": info["token_ids"], "token_texts": [text(i) for i in info["token_ids"]],
        "frozen_at": info["frozen_at"], "iterations": info["iterations"],
        "steps": [{**s, "texts": [text(t) for t in s["tokens"]]} for s in info["wavefront"]],
        "summary": {"outer_steps": info["outer_steps"], "core_passes": p["core_passes"],
                    "passes_per_token": info["passes_per_token"],
                    "speedup_in_passes": p["r"] / info["passes_per_token"] if info["passes_per_token"] else 0.0,
                    "tokens_per_s": result.tokens_per_s},
    }


def save_wavefront(run_path, record: dict, name: str | None = None) -> Path:
    """Write RUN/wavefronts/<name>.json; an existing name gets a -2, -3, ... suffix instead."""
    stem = name or time.strftime("wavefront-%Y%m%d-%H%M%S")
    return write_new(Path(run_path) / "wavefronts", stem, {"json": json.dumps(record, indent=1) + "\n"})[0]


def list_wavefronts(run_path) -> list[Path]:
    folder = Path(run_path) / "wavefronts"
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name), reverse=True)


def load_wavefront(path) -> dict:
    data = json.loads(Path(path).read_text())
    if data.get("kind") != "wavefront" or not isinstance(data.get("steps"), list):
        raise ValueError(f"{path} is not a saved wavefront")
    return data
