"""Write a figure's files into a folder without ever replacing one: PNG, SVG, PDF, the CSV of
its series, and (from the TUI) the screen itself as SVG.

    paths = save_figure(fig, run_figures_dir(run), formats=["png", "svg"], csv=True)
    # [.../figures/sweep-acc-cpu-demo.png, ...svg, ...csv]; the next call gives sweep-acc-cpu-demo-2.*

All files of one figure share a stem; a stem is taken only if no file of any extension has it.
Each file is created exclusively (O_EXCL), fsynced, and the folder fsynced after
(recurlab.rundir.write_new, the one writer of results).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from recurlab.figures.render import check_formats, render
from recurlab.figures.spec import FigureError, csv_text
from recurlab.rundir import RunDir
from recurlab.rundir import write_new as rundir_write_new


def run_figures_dir(run: RunDir) -> Path:
    return run.path / "figures"


def prepare_dir(out: Path) -> Path:
    """Create `out` (and parents) or say why it cannot hold figures."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FigureError(f"cannot write figures to {out}: it is a file; choose a folder with --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FigureError(f"cannot create {out}: {exc.strerror or exc}; choose a writable folder with --out") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise FigureError(f"cannot write figures to {out}: permission denied; choose a writable folder with --out")
    return out


def write_new(out: Path, stem: str, files: dict[str, bytes]) -> list[Path]:
    """Write {suffix: bytes} as out/stem.suffix, or out/stem-2.suffix, ... at the first stem
    that no existing file uses (through the run directory's one writer). Never replaces a file."""
    out = prepare_dir(out)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "figure"
    try:
        return rundir_write_new(out, stem, files)
    except OSError as exc:
        raise FigureError(f"cannot write {out / stem}: {exc.strerror or exc}; choose another folder with --out") from None


def save_figure(fig, out: Path, formats: list[str] = ("png", "svg", "pdf"), csv: bool = False,
                size: tuple[int, int] = (960, 600), dpi: int = 150) -> list[Path]:
    formats = check_formats(list(formats))
    prepare_dir(out)  # before the slow part
    files = {fmt: render(fig, fmt, size, dpi) for fmt in formats}
    if csv:
        files["csv"] = csv_text(fig).encode()
    return write_new(out, fig.name, files)
