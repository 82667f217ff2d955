"""The seeds' four-way comparison: same data, optimizer and token budget, four architectures.
Orchestration (it trains runs and sweeps them), so it sits beside recurlab.lifecycle, not in text/.

    from recurlab.compare import run_comparison
    table = run_comparison("compare", ["data.name=/data/math"], runs_dir="runs", rs=[1, 2, 4, 8, 16])
    print(format_comparison(table))     # also written to runs/compare.{csv,json} (compare-2.* next)

The four runs train one after the other in this process (the GPU holds one at a time, and
sequential runs see the same machine state), each in its own run directory NAME-ARCH that
`recurlab runs`, `logs` and the TUI read like any other. After each run its last checkpoint is
swept over `rs`; the table has one row per r and a loss and bits-per-byte column per model
(fixed-depth models do not depend on r, so their columns are constant).
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

from recurlab.errors import ComparisonError
from recurlab.lifecycle import create_run, plan_run
from recurlab.rundir import RunDir, new_run_name, write_new
from recurlab.worker import run_worker

ARCHS = {  # model.arch -> column label
    "recurrent": "latent",
    "token_recurrent": "token",
    "fixed_depth": "fixed",
    "fixed_depth_matched": "matched",
}


def run_comparison(profile: str, overrides: list[str], runs_dir: str | Path, rs: list[int], name: str = "",
                   device: str = "", progress: bool = False, log=print) -> dict:
    from recurlab.engine import open_model, run_sweep  # torch and yaml: loaded only when this runs

    # all four are checked (profile, names, device, data) before the first one is created
    base = plan_run(runs_dir, profile, [*overrides, "model.arch=recurrent"], device=device)
    name = name or new_run_name(base.cfg.profile, runs_dir)
    plans = {arch: plan_run(runs_dir, profile, [*overrides, f"model.arch={arch}"], name=f"{name}-{ARCHS[arch]}",
                            device=device) for arch in ARCHS}
    runs, sweeps, params = {}, {}, {}
    for arch, plan in plans.items():
        cfg = plan.cfg
        run = create_run(plan)
        log(f"[{ARCHS[arch]}] training {run.name} (model.arch={arch}, {cfg.train.max_steps} steps)")
        t0 = time.time()
        code = run_worker(run.path, device=device, progress=progress)
        status = run.read_status()
        if code != 0 or status.get("state") != "finished":
            raise ComparisonError(f"run {run.name} ended {status.get('state')}: {status.get('error') or 'stopped'}; "
                                  f"see `recurlab logs {run.name} --runs-dir {runs_dir}`")
        result = run_sweep(open_model(run, device=device or cfg.hardware.device), rs)
        runs[arch], sweeps[arch], params[arch] = run.name, result.rows, status.get("params")
        log(f"[{ARCHS[arch]}] {status.get('tokens'):,} tokens in {time.time() - t0:.0f}s; "
            + ", ".join(f"r={row['r']}: {row['loss']:.4f}" for row in result.rows))
    table = {"name": name, "profile": profile, "overrides": overrides, "rs": rs, "runs": runs, "params": params,
             "tokens": {a: RunDir(Path(runs_dir) / n).read_status().get("tokens") for a, n in runs.items()},
             "rows": comparison_rows(sweeps, rs), "time": time.time()}
    # compare.{csv,json}, or compare-2.* and so on: an earlier comparison is never replaced
    csv_path, _ = write_new(Path(runs_dir), "compare", {"csv": to_csv(table), "json": json.dumps(table, indent=1) + "\n"})
    table["path"] = str(csv_path)
    return table


def comparison_rows(sweeps: dict, rs: list[int]) -> list[dict]:
    rows = []
    for r in rs:
        row = {"r": r}
        for metric in ("loss", "bpb"):
            for arch, label in ARCHS.items():
                hit = next((x for x in sweeps.get(arch, []) if x["r"] == r), None)
                row[f"{metric}_{label}"] = hit.get(metric) if hit else None
        rows.append(row)
    return rows


def _columns() -> list[str]:
    return ["r"] + [f"{m}_{label}" for m in ("loss", "bpb") for label in ARCHS.values()]


def to_csv(table: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_columns())
    for row in table["rows"]:
        w.writerow(["" if row[c] is None else (f"{row[c]:.6g}" if isinstance(row[c], float) else row[c]) for c in _columns()])
    return buf.getvalue()


def format_comparison(table: dict) -> str:
    """Validation loss (and bits per byte) per r, one column per model, as aligned text."""
    cols = _columns()
    cells = [cols] + [[str(row["r"])] + ["-" if row[c] is None else f"{row[c]:.4f}" for c in cols[1:]]
                      for row in table["rows"]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    params = ", ".join(f"{ARCHS[a]} {p / 1e6:.2f}M" for a, p in table["params"].items() if p)
    return "\n".join(lines + [f"params: {params}", "runs: " + ", ".join(table["runs"].values())])

