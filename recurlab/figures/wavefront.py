"""The parallel sampler's wavefront as a heatmap: one row per outer step, one column per generated
position, each cell the core iterations that position had after that step (blank outside the
wavefront), crosses where positions froze (their tokens committed).

    record, name = load_wavefront(RunDir("runs/cpu-demo"))      # the newest of RUN/wavefronts/*.json
    wavefront_figure(record, run="cpu-demo", name=name)

Reads the files `recurlab generate --sampler parallel --save-wavefront` and the TUI's Generate
screen write (schema in recurlab/engine/wavefronts.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from recurlab.figures.curves import _slug
from recurlab.figures.spec import FigureError, HeatFigure
from recurlab.rundir import RunDir


def wavefront_files(run: RunDir) -> list[Path]:
    folder = run.path / "wavefronts"
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name))


def load_wavefront(run: RunDir, name: str | None = None) -> tuple[dict, str]:
    files = wavefront_files(run)
    if not files:
        raise FigureError(f"run {run.name} has no saved wavefronts: generate with "
                          f"`recurlab generate {run.name} --sampler parallel --save-wavefront` first")
    if name is not None:
        files = [p for p in files if p.stem == name or p.name == name]
        if not files:
            raise FigureError(f"run {run.name} has no wavefront {name!r}: see {run.path / 'wavefronts'}")
    path = files[-1]
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FigureError(f"cannot read wavefront {path}: {exc}") from None
    if not isinstance(record, dict) or record.get("kind") != "wavefront" or not record.get("steps"):
        raise FigureError(f"{path} is not a wavefront saved by the parallel sampler")
    return record, path.stem


def wavefront_figure(record: dict, *, run: str, name: str) -> HeatFigure:
    steps = record["steps"]
    width = max([len(record.get("token_ids") or [])] + [s["first"] + len(s["iterations"]) for s in steps])
    matrix, marks = [], []
    for row, s in enumerate(steps):
        cells: list[float | None] = [None] * width
        for j, n in enumerate(s["iterations"]):
            cells[s["first"] + j] = float(n)
        matrix.append(cells)
        marks += [(s["first"] + j, row) for j in range(int(s.get("frozen") or 0))]
    summary = record.get("summary") or {}
    facts = [f"{summary['outer_steps']} outer steps" if "outer_steps" in summary else "",
             f"{summary['passes_per_token']:.2f} core passes per token" if "passes_per_token" in summary else "",
             f"{summary['speedup_in_passes']:.2f}x fewer passes than sequential" if summary.get("speedup_in_passes") else ""]
    return HeatFigure(
        kind="wavefront", name=f"wavefront-{_slug(run)}-{_slug(name)}",
        title=f"parallel sampler wavefront: core iterations per position, r = {record.get('r')}",
        subtitle=f"{run}, {name}: {record.get('prompt', '')!r}, sampler {record.get('sampler', 'parallel')}"
        + "".join(f", {f}" for f in facts if f),
        xlabel="generated position", ylabel="outer step", value_label="core iterations so far",
        matrix=matrix, row_labels=[f"step {s.get('step', i + 1)}" for i, s in enumerate(steps)],
        marks=marks, mark_label="frozen (token committed)", first_column=0,
    )
