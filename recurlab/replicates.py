"""Several seeds of one experiment: run names, and sweeps aggregated into mean and spread.

    recurlab train --profile cpu --name perm --seeds 0,1,2          # runs perm-s0, perm-s1, perm-s2
    recurlab sweep 'perm-s*' --r 1,8,32 --difficulties 5,6          # each run's sweep, then mean ± sd
    recurlab sweep perm-s0 perm-s1 perm-s2 --r 1,8,32 --reuse       # aggregate sweeps already saved

    from recurlab.replicates import aggregate, format_aggregate
    table = aggregate([result_s0, result_s1, result_s2])            # SweepResult of each run
    print(format_aggregate(table))

The spread is the sample standard deviation over runs (n - 1 in the denominator) with the
minimum and maximum beside it, so three seeds show how far apart they really were.
No torch here: aggregation works on saved sweeps.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from recurlab.config import from_dict, load_yaml
from recurlab.errors import InferenceError
from recurlab.rundir import RunDir, create_new, list_runs, resolve_run
from recurlab.sweep import SweepResult, load_sweeps


def parse_seeds(spec: str) -> list[int]:
    """`0,1,2` as distinct seeds >= 0, or one user-facing error line."""
    try:
        seeds = [int(x) for x in spec.replace(" ", "").split(",") if x]
    except ValueError:
        raise InferenceError(f"--seeds must be a comma-separated list of integers like 0,1,2, got {spec!r}") from None
    if not seeds or min(seeds) < 0:
        raise InferenceError(f"--seeds values must be integers >= 0, got {spec!r}")
    if len(set(seeds)) != len(seeds):
        raise InferenceError(f"--seeds lists a seed twice: {spec!r}")
    return seeds


def seed_run_name(name: str, seed: int) -> str:
    return f"{name}-s{seed}"


def expand_runs(specs: list[str], runs_dir: str) -> list[RunDir]:
    """Run names, prefixes, paths, or shell-style patterns over the names in runs_dir ('perm-s*')."""
    out: list[RunDir] = []
    for spec in specs:
        if any(ch in spec for ch in "*?["):
            matched = sorted((r for r in list_runs(runs_dir) if fnmatch.fnmatchcase(r.name, spec)), key=lambda r: r.name)
            if not matched:
                raise InferenceError(f"no run in {runs_dir} matches {spec!r}; `recurlab runs` lists them")
            out.extend(matched)
        else:
            out.append(resolve_run(spec, runs_dir))
    seen, unique = set(), []
    for run in out:
        if run.path.resolve() not in seen:
            seen.add(run.path.resolve())
            unique.append(run)
    return unique


@dataclass
class Cell:
    """One column at one r over runs."""

    values: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def sd(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0


@dataclass
class Aggregate:
    runs: list[str]
    steps: list[int]
    columns: list[str]  # loss then acc@<level> (or bpb), in the sweeps' order
    rows: dict[int, dict[str, Cell]]  # r -> column -> cell

    def to_records(self) -> list[dict]:
        out = []
        for r, cells in self.rows.items():
            rec = {"r": r, "n": len(self.runs)}
            for c in self.columns:
                cell = cells[c]
                rec.update({f"{c}_mean": cell.mean, f"{c}_sd": cell.sd, f"{c}_min": min(cell.values),
                            f"{c}_max": max(cell.values)})
            out.append(rec)
        return out


def aggregate(results: list) -> Aggregate:
    """Mean and spread per (r, column) over SweepResults; only the r and columns all of them have."""
    if not results:
        raise InferenceError("no sweeps to aggregate")
    value_cols = [c for c in results[0].columns if c not in ("r", "tokens_per_s")]
    for res in results[1:]:
        value_cols = [c for c in value_cols if c in res.columns]
    by_run = [{row["r"]: row for row in res.rows} for res in results]
    rs = [r for r in (row["r"] for row in results[0].rows) if all(r in rows for rows in by_run)]
    if not rs or not any(c != "loss" for c in value_cols):
        raise InferenceError("the runs' sweeps share no r or no level; sweep them with the same --r and --difficulties")
    table = {r: {c: Cell([float(rows[r][c]) for rows in by_run]) for c in value_cols} for r in rs}
    return Aggregate(runs=[res.run for res in results], steps=[res.step for res in results], columns=value_cols,
                     rows=table)


def format_aggregate(agg: Aggregate) -> str:
    """Aligned text: one row per r, each cell `mean ± sd (min–max)`; accuracies in percent."""
    head = ["r"] + agg.columns
    lines = [head]
    for r, cells in agg.rows.items():
        line = [str(r)]
        for c in agg.columns:
            cell = cells[c]
            if c.startswith("acc@"):
                line.append(f"{100 * cell.mean:.1f} ± {100 * cell.sd:.1f} ({100 * min(cell.values):.0f}–"
                            f"{100 * max(cell.values):.0f})")
            else:
                line.append(f"{cell.mean:.4f} ± {cell.sd:.4f}")
        lines.append(line)
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in lines)


def to_csv(agg: Aggregate) -> str:
    records = agg.to_records()
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(records[0]), lineterminator="\n")
    w.writeheader()
    for rec in records:
        w.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in rec.items()})
    return buf.getvalue()


def check_out(path: Path) -> None:
    """--out must name a new file in an existing folder: checked before any sweep is run or saved."""
    if path.exists() or path.is_symlink():
        raise InferenceError(f"--out {str(path)!r} already exists; pick another --out (results are never overwritten)")
    if not path.parent.is_dir():
        raise InferenceError(f"--out {str(path)!r}: folder {str(path.parent)!r} does not exist; create it or pick "
                             "another --out")


def write_out(path: Path, text: str) -> None:
    """Write the aggregate to a file that must not exist yet (the one exclusive writer: fsynced with its folder)."""
    check_out(path)
    try:
        create_new(path, text)
    except FileExistsError:
        raise InferenceError(f"--out {str(path)!r} already exists; pick another --out (results are never overwritten)") from None
    except OSError as exc:
        raise InferenceError(f"cannot write --out {str(path)!r}: {exc.strerror}; pick another --out") from None


def saved_sweep(run: RunDir, rs: list[int], levels: list[int] | None):
    """The newest saved sweep of the run's latest complete checkpoint that covers every r in `rs`
    at exactly `levels` (None: the run's own levels), cut to those r; None when there is none."""
    ckpt = run.latest_checkpoint()
    if ckpt is None:
        return None
    if levels is None:
        data = from_dict(load_yaml(run.config_path), source=str(run.config_path)).data
        levels = data.difficulties if data.source == "task" else []
    want = sorted(levels)
    best = None
    for res in load_sweeps(run):
        have = sorted(int(c[4:]) for c in res.columns if c.startswith("acc@"))
        rows = {row["r"]: row for row in res.rows}
        if res.step == ckpt.step and have == want and all(r in rows for r in rs):
            best = SweepResult(run=res.run, step=res.step, rows=[rows[r] for r in rs], complete=True, path=res.path)
    return best
