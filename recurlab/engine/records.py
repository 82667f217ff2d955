"""Result files that are never overwritten: tuned lenses, interventions, stability summaries.

    root = record_root(opened)                         # the run directory, or . for a model folder
    paths = write_new(root / "interventions", "patch-1", {"json": data})   # patch-1.json, or patch-1-2.json
    record, path = newest_record(root / "stability", kind="stability")

Files go through the run directory's one result writer (`recurlab.rundir.write_new`: exclusive
create, fsync of the file and the folder), so a later result gets NAME-2, NAME-3, ... and an
earlier one is never replaced. No torch here.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from recurlab import rundir
from recurlab.errors import InferenceError

NAME_RE = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"


def record_root(opened) -> Path:
    """Where results of an opened model go: its run directory, or the current folder for a
    model folder (as `recurlab inspect` does with traces)."""
    return opened.run.path if opened.run is not None else Path(".")


def default_name(prefix: str) -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_name(name: str) -> str:
    if not re.fullmatch(NAME_RE, name or ""):
        raise InferenceError(f"name {name!r} must be letters, digits, '.', '_' or '-' (at most 100)")
    return name


def write_new(folder: Path, stem: str, files: dict[str, bytes]) -> dict[str, Path]:
    """Write {suffix: bytes} as folder/stem.suffix, or stem-2, stem-3, ... at the first stem no
    existing file uses (the run directory's one result writer). Returns {suffix: path}."""
    check_name(stem)
    try:
        paths = rundir.write_new(Path(folder), stem, files)
    except OSError as exc:
        raise InferenceError(f"cannot write {Path(folder) / stem}: {exc.strerror or exc}") from None
    return {p.name.rsplit(".", 1)[1]: p for p in paths}


def write_json(folder: Path, stem: str, record: dict) -> Path:
    return write_new(folder, stem, {"json": (json.dumps(record, indent=1) + "\n").encode()})["json"]


def read_records(folder: Path, kind: str) -> list[tuple[dict, Path]]:
    """Every readable JSON record of `kind` in `folder`, oldest first (unreadable files are skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name)):
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and rec.get("kind") == kind:
            out.append((rec, p))
    return out


def newest_record(folder: Path, kind: str, name: str | None = None) -> tuple[dict, Path] | None:
    """The record called `name` (file stem), or the newest one; None if there is none."""
    recs = read_records(folder, kind)
    if name is not None:
        recs = [(r, p) for r, p in recs if p.stem == name or p.name == name]
    return recs[-1] if recs else None
