"""What every benchmark shares: its argument parser with `--out`, the machine it ran on, and the
JSON result file.

    p = bench_parser("generate", __doc__, out="bench-results/generate.json")
    p.add_argument("--rs", default="4,16,32")
    args = p.parse_args(argv)
    ...
    path = write_result(args.out, result)    # result["machine"] added; the folder is created

`machine()` records the CPU model, core count, torch threads (when torch is loaded), the load
average, the Python and torch versions and the git commit of this tree, so that a number read
later says where it came from. No torch import here: a benchmark of the TUI's start-up stays light.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

TREE = Path(__file__).resolve().parents[2]


def bench_parser(name: str, doc: str, out: str | None) -> argparse.ArgumentParser:
    """The parser of `python -m recurlab.bench.NAME`, described by the first line of its docstring;
    `out` is the default of --out (None: the benchmark takes no --out)."""
    p = argparse.ArgumentParser(prog=f"python -m recurlab.bench.{name}", description=doc.strip().splitlines()[0])
    if out is not None:
        p.add_argument("--out", default=out, help=f"the JSON result file (default {out or 'none'}; its folder is created)")
    return p


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages ([] where the system does not say)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    """This tree's commit, with `+changes` when files differ from it; None outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=TREE, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=TREE,
                               capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine() -> dict:
    """Where a result came from (see the module docstring)."""
    torch = sys.modules.get("torch")  # threads and GPU only when the benchmark loaded torch itself
    info = {"cpu": _cpu_model(), "cpu_count": os.cpu_count(), "platform": sys.platform,
            "torch_threads": torch.get_num_threads() if torch is not None else None,
            "load_average": load_average(), "python": platform.python_version(), "git_commit": _git_commit()}
    try:
        info["torch"] = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        info["torch"] = None
    if torch is not None and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def fresh_path(path: Path) -> Path:
    """`path`, or path-2, path-3 ... when it exists: for a benchmark that never replaces a result."""
    n, out = 1, path
    while out.exists():
        n += 1
        out = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return out


def write_result(out: str | Path, result, *, keep_earlier: bool = False, indent: int = 1) -> Path:
    """Write `result` as JSON to `out` (a fresh name beside it with `keep_earlier`), creating the
    folder; a dict result gets (in place) the `machine` it ran on. -> the path written."""
    if isinstance(result, dict):
        result["machine"] = machine()
    path = fresh_path(Path(out)) if keep_earlier else Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=indent) + "\n")
    return path
