"""Sweep results on disk: the files a sweep of r writes into a run, and reading them back. No torch.

    from recurlab.sweep import load_sweeps, table_cells, parse_rs
    load_sweeps(run)                     # every saved sweep, the newest last
    grid = level_grid(load_sweeps(run), step=1600)   # accuracy per (task level, r) of one checkpoint
    save_sweep(run, result, rs, levels, difficulties)   # sweeps/step_NNNNNNNN.{csv,json}; a later
                                         # sweep never replaces it: step_NNNNNNNN_2.*; other levels:
                                         # step_NNNNNNNN_levels_5-6.*

Running a sweep is the engine's job: `recurlab.engine.run_sweep(opened, rs)` evaluates an opened
checkpoint at each r and saves through `save_sweep`. The CSV is a stable interface: one row per r,
columns `r`, `loss`, `tokens_per_s`, then `acc@<difficulty>` in increasing difficulty (task runs)
or `bpb` (text runs).
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from recurlab.errors import InferenceError
from recurlab.rundir import RunDir, read_json, write_new
from recurlab.tasks import FEW_HELDOUT


@dataclass
class SweepResult:
    run: str
    step: int
    rows: list[dict] = field(default_factory=list)
    complete: bool = True
    path: Path | None = None
    heldout: dict[int, int] = field(default_factory=dict)  # distinct held-out prompts per level (task runs)

    @property
    def columns(self) -> list[str]:
        return sweep_columns(self.rows)


def sweep_columns(rows: list[dict]) -> list[str]:
    if not rows:
        return ["r", "loss", "tokens_per_s"]
    accs = sorted((k for k in rows[0] if k.startswith("acc@")), key=lambda k: float(k[4:]))
    extra = ["bpb"] if "bpb" in rows[0] else accs
    return ["r", "loss", "tokens_per_s", *extra]


def to_csv(rows: list[dict]) -> str:
    cols = sweep_columns(rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for row in rows:
        w.writerow([_fmt(row.get(c)) for c in cols])
    return buf.getvalue()


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else str(v)


def table_cells(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The sweep as a header and rows of formatted cells (what the CLI prints as a table)."""
    cols = sweep_columns(rows)
    head = {"tokens_per_s": "tok/s"}
    cells = []
    for row in rows:
        line = []
        for c in cols:
            v = row.get(c)
            if c == "r":
                line.append(str(v))
            elif c.startswith("acc@"):
                line.append(f"{100 * v:.1f}%")
            elif c == "tokens_per_s":
                line.append(f"{v:,.0f}")
            else:
                line.append(f"{v:.4f}")
        cells.append(line)
    return [head.get(c, c) for c in cols], cells


def format_heldout(counts: dict[int, int]) -> str:
    """One line saying how many distinct held-out prompts each level's accuracy rests on."""
    if not counts:
        return ""
    parts = [f"{d}: {n}" + (" (few: its accuracy says little)" if n < FEW_HELDOUT else "")
             for d, n in sorted(counts.items(), key=lambda kv: int(kv[0]))]
    return "distinct held-out prompts per level: " + ", ".join(parts)


def _positive_ints(spec: str, option: str, example: str, why: str = "") -> list[int]:
    """A comma-separated option value as integers >= 1, or one user-facing error line."""
    try:
        # every item must be a number: '' and '1,,2' are mistakes, not shorthands
        values = [int(x) for x in spec.replace(" ", "").split(",")]
    except ValueError:
        raise InferenceError(f"{option} must be a comma-separated list of integers like {example}, got {spec!r}") from None
    if not values or min(values) < 1:
        raise InferenceError(f"{option} values must be >= 1{why}, got {spec!r}")
    return values


def parse_rs(spec: str) -> list[int]:
    return _positive_ints(spec, "--r", "1,2,4,8", " (r = 0 runs no recurrence)")


def parse_levels(spec: str) -> list[int]:
    return sorted(set(_positive_ints(spec, "--difficulties", "5,6")))


def save_sweep(run: RunDir, result: SweepResult, rs: list[int], levels: list[int], difficulties: list[int] | None) -> Path:
    """Write a sweep's CSV and JSON into the run's sweeps/ folder under a fresh name; -> the CSV path.
    `levels` are the task levels evaluated; `difficulties` names the file when they are not the run's own."""
    rows, counts = result.rows, result.heldout
    record = {"run": run.name, "step": result.step, "rs": rs, "complete": result.complete, "difficulties": levels,
              "heldout_prompts": {str(d): n for d, n in counts.items()},
              "time": time.time(), "columns": sweep_columns(rows), "rows": rows}
    tag = f"_levels_{'-'.join(map(str, difficulties))}" if difficulties else ""
    # the first sweep of a checkpoint is step_N.*, later ones step_N_2.*, step_N_3.*, ...
    csv_path, _ = write_new(run.sweeps_dir, f"step_{result.step:08d}{tag}",
                            {"csv": to_csv(rows), "json": json.dumps(record, indent=1) + "\n"}, sep="_")
    return csv_path


def load_sweeps(run: RunDir) -> list[SweepResult]:
    """Every saved sweep of the run, oldest first (by the time each was saved), so the last one
    is the newest."""
    found = []
    if run.sweeps_dir.is_dir():
        for p in run.sweeps_dir.glob("step_*.json"):
            data = read_json(p)
            if isinstance(data, dict) and isinstance(data.get("rows"), list):
                counts = data.get("heldout_prompts")
                counts = {int(d): int(n) for d, n in counts.items()} if isinstance(counts, dict) else {}
                res = SweepResult(run=data.get("run", run.name), step=int(data.get("step", 0)), rows=data["rows"],
                                  complete=bool(data.get("complete", True)), path=p.with_suffix(".csv"), heldout=counts)
                when = data.get("time")
                found.append((when if isinstance(when, (int, float)) else p.stat().st_mtime, p.name, res))
    return [res for _, _, res in sorted(found, key=lambda t: (t[0], t[1]))]


@dataclass
class LevelGrid:
    """Accuracy per task level (rows) and r (columns) of one checkpoint."""

    step: int
    levels: list[int] = field(default_factory=list)
    rs: list[int] = field(default_factory=list)
    acc: dict[tuple[int, int], float] = field(default_factory=dict)  # (level, r) -> accuracy


def level_grid(results: list[SweepResult], step: int) -> LevelGrid:
    """The grid over every sweep of checkpoint `step` (the run's own levels and harder ones join);
    a later sweep wins where two measured the same cell. The Sweep screen's heatmap and the
    figure of it both draw this."""
    grid = LevelGrid(step=step)
    for res in results:
        if res.step != step:
            continue
        for row in res.rows:
            for key, value in row.items():
                if key.startswith("acc@") and value is not None:
                    grid.acc[(int(key[4:]), int(row["r"]))] = float(value)
    grid.levels = sorted({lv for lv, _ in grid.acc})
    grid.rs = sorted({r for _, r in grid.acc})
    return grid
