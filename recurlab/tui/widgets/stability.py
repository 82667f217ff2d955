"""The stability summary beside the Sweep screen's heatmap: per level, accuracy at the summary's r,
the fraction of answer positions settling and the median / 90th percentile spectral radius of the
core step (written by `recurlab inspect RUN --stability`), so that extrapolation and stability
are read together. Hidden while the run has no summary. No torch.

    panel = StabilityPanel(id="sweep-stability"); panel.load(run)   # the newest stability/*.json
"""

from __future__ import annotations

import json

from rich.text import Text
from textual.widgets import Static


def newest_summary(run) -> tuple[dict, str] | None:
    folder = run.path / "stability"
    if not folder.is_dir():
        return None
    for p in sorted(folder.glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name), reverse=True):
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and rec.get("kind") == "stability":
            return rec, p.stem
    return None


def _pct(v) -> str:
    return "    -" if v is None else f"{100 * v:4.0f}%"


def _num(v) -> str:
    return "    -" if v is None else f"{v:5.2f}"


def render_summary(rec: dict, name: str) -> Text:
    out = Text()
    out.append(f"stability at r = {rec['r']} ({name})\n", style="bold")
    out.append("level   acc  settl  drift  ρ med  ρ p90\n", style="dim")
    for g in rec["groups"]:
        settling = g.get("settling")
        style = "green" if settling is not None and settling >= 0.9 else ("yellow" if settling and settling >= 0.5 else "red")
        out.append(f"{str(g['level']):>5} {_pct(g.get('accuracy'))} ")
        out.append(f"{_pct(settling)}", style=style)
        out.append(f" {_pct(g.get('drifting'))}  {_num(g.get('radius_median'))}  {_num(g.get('radius_p90'))}\n")
    out.append(f"settling: relative change < {rec['tol']:g}; ρ: spectral radius", style="dim")
    return out


class StabilityPanel(Static):
    def load(self, run) -> None:
        found = newest_summary(run) if run is not None else None
        self.display = found is not None
        self.update(render_summary(*found) if found else "")
