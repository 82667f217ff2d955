"""Evaluation results: rows (task x r), the text table, and the saved files in evals/ (no torch, no lm-eval).

    writer = EvalWriter(run.path / "evals")          # the first save takes evals/eval-YYYYmmdd-HHMMSS[-k].{json,csv}
    writer.save(record)                              # later saves replace its own two files atomically
    print(format_table(record["rows"], record["rs"]))
    load_evals(run.path / "evals")                   # saved evaluations, oldest first

A row: task, r, metric, value, stderr, n, mean_iterations (None without an exit rule), tokens
(the number of tokens behind mean_iterations). `record["histograms"][task][str(r)]` maps an
iteration count to the number of scored or generated tokens that exited there.
An evaluation's files are never replaced by another evaluation's: each gets a name no earlier
file has, claimed with an exclusive create.
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

from recurlab.rundir import atomic_write_text, read_json, write_new

CSV_COLUMNS = ["task", "r", "metric", "value", "stderr", "n", "mean_iterations", "tokens"]
# the metric shown for a task, in order of preference (lm-eval keys are "metric,filter")
PRIMARY = ("exact_match", "acc_norm", "acc", "word_perplexity", "perplexity")
FILTER_ORDER = ("strict-match", "none", "flexible-extract")


def primary_metric(task_results: dict) -> tuple[str, float, float | None] | None:
    """(metric key, value, stderr) of the preferred metric in one task's lm-eval results."""
    keys = [k for k, v in task_results.items() if "," in k and "_stderr" not in k and isinstance(v, (int, float))]
    if not keys:
        return None

    def rank(key: str):
        metric, _, filt = key.partition(",")
        m = PRIMARY.index(metric) if metric in PRIMARY else len(PRIMARY)
        f = FILTER_ORDER.index(filt) if filt in FILTER_ORDER else len(FILTER_ORDER)
        return (m, f, key)

    key = min(keys, key=rank)
    metric, _, filt = key.partition(",")
    err = task_results.get(f"{metric}_stderr,{filt}")
    return key, float(task_results[key]), float(err) if isinstance(err, (int, float)) else None


def histogram(iterations: list[int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for it in sorted(iterations):
        out[str(it)] = out.get(str(it), 0) + 1
    return out


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for row in rows:
        w.writerow(["" if row.get(c) is None else (f"{row[c]:.6g}" if isinstance(row[c], float) else row[c])
                    for c in CSV_COLUMNS])
    return buf.getvalue()


def cell(row: dict | None, percent: bool = True, compact: bool = False) -> str:
    """One table cell: value ± stderr, then the mean iterations per token under an exit rule."""
    if row is None:
        return "-"
    scale = 100 if percent and row["metric"].split(",")[0] in ("exact_match", "acc", "acc_norm") else 1
    text = f"{scale * row['value']:.1f}" if scale == 100 else f"{row['value']:.4g}"
    pm = "±" if compact else " ± "
    if row.get("stderr") is not None:
        text += f"{pm}{scale * row['stderr']:.1f}" if scale == 100 else f"{pm}{row['stderr']:.2g}"
    if row.get("mean_iterations") is not None:
        text += f" {row['mean_iterations']:.1f}it" if compact else f" ({row['mean_iterations']:.2f} it)"
    return text


def format_table(rows: list[dict], rs: list[int]) -> str:
    """task x r: the metric (in percent for accuracies) ± stderr, (mean iterations per token)."""
    tasks = list(dict.fromkeys(row["task"] for row in rows))
    by = {(row["task"], row["r"]): row for row in rows}
    head = ["task", "metric"] + [f"r={r}" for r in rs]
    lines = [head]
    for t in tasks:
        metric = next(row["metric"] for row in rows if row["task"] == t)
        lines.append([t, metric] + [cell(by.get((t, r))) for r in rs])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
                     for line in lines)


class EvalWriter:
    """Saves one evaluation as NAME.json and NAME.csv in `folder`; NAME is claimed on the first save."""

    def __init__(self, folder: str | Path, prefix: str = "eval"):
        self.folder = Path(folder)
        self.prefix = prefix
        self.json_path: Path | None = None

    def save(self, record: dict) -> Path:
        """The first save takes a fresh name (never one of a saved evaluation); later saves of
        the same evaluation, as rows arrive, replace its own two files atomically."""
        def files(stem: str, record=record) -> dict[str, str]:
            record = {**record, "name": stem, "csv": f"{stem}.csv"}
            return {"csv": to_csv(record["rows"]), "json": json.dumps(record, indent=1, default=str) + "\n"}

        if self.json_path is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            _, self.json_path = write_new(self.folder, f"{self.prefix}-{time.strftime('%Y%m%d-%H%M%S')}", files)
            return self.json_path
        own = files(self.json_path.stem)
        atomic_write_text(self.json_path.with_suffix(".csv"), own["csv"])
        atomic_write_text(self.json_path, own["json"])
        return self.json_path


def load_evals(folder: str | Path) -> list[dict]:
    """Saved evaluations in `folder`, oldest first; each dict gains `path`."""
    out = []
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.glob("*.json"):
            data = read_json(p)
            if isinstance(data, dict) and isinstance(data.get("rows"), list) and "rs" in data:
                data["path"] = str(p)
                out.append(data)
    return sorted(out, key=lambda d: (d.get("time", 0), d["path"]))
