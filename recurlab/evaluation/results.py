"""Evaluation results: rows (task x r), the text table, and the saved files in evals/ (no torch, no lm-eval).

    writer = EvalWriter(run.path / "evals")          # reserves evals/eval-YYYYmmdd-HHMMSS[-k].json on first save
    writer.save(record)                              # JSON + CSV, replaced atomically as rows arrive
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
import os
import time
from pathlib import Path

from recurlab.rundir import atomic_write_text, fsync_dir, read_json

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

    def _claim(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for k in range(1, 1000):
            base = self.folder / (f"{self.prefix}-{stamp}" + (f"-{k}" if k > 1 else ""))
            if base.with_suffix(".csv").exists():
                continue
            try:
                fd = os.open(base.with_suffix(".json"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0666 less the umask
            except FileExistsError:
                continue
            os.close(fd)
            return base.with_suffix(".json")
        raise RuntimeError(f"no free evaluation name in {self.folder}")

    def save(self, record: dict) -> Path:
        if self.json_path is None:
            self.json_path = self._claim()
        record = {**record, "name": self.json_path.stem, "csv": self.json_path.with_suffix(".csv").name}
        atomic_write_text(self.json_path.with_suffix(".csv"), to_csv(record["rows"]))
        atomic_write_text(self.json_path, json.dumps(record, indent=1, default=str) + "\n")
        fsync_dir(self.folder)
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
