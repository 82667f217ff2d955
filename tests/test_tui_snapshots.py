"""Snapshot tests of the main TUI screens on fixed, hand-written run directories (no clocks,
no training), so every pixel is deterministic. Update with `pytest --snapshot-update`.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from recurlab.rundir import RunDir, atomic_write_json

SIZE = (110, 32)
CONFIG = """profile: tiny
model: {n_embd: 32, n_head: 2, n_prelude: 1, n_core: 1, n_coda: 1, block_size: 32}
data: {source: task, task: addition, difficulties: [2, 3], eval_examples: 32}
train: {r_mean: 4, k: 2, batch_size: 16, max_steps: 200, eval_every: 50, eval_r: [1, 4]}
hardware: {device: cpu}
"""


def fake_run(root: Path, name: str, created: float, scale: float, steps: int = 200) -> RunDir:
    run = RunDir.create(root, name, CONFIG)
    rows = []
    for s in range(1, steps + 1):
        loss = scale * (0.6 + 2.8 * math.exp(-s / 40)) + 0.05 * math.sin(s)
        rows.append({"kind": "train", "step": s, "time": 1000.0 + s, "loss": round(loss, 4),
                     "lr": 1e-3 * min(1, s / 20), "tokens": 256 * s, "tokens_per_s": 2500 + 100 * math.sin(s / 7)})
        if s % 50 == 0:
            for r, acc in ((1, 0.1), (4, 0.3)):
                rows.append({"kind": "eval", "step": s, "time": 1000.0 + s, "r": r, "loss": round(loss * (1.3 - acc), 4),
                             "acc": acc * s / steps, "tokens_per_s": 9000})
    run.append_metrics(rows)
    run.write_status(state="finished", created=created, step=steps, max_steps=steps, loss=rows[-3]["loss"],
                     tokens_per_s=2512.0, pid=None)
    return run


@pytest.fixture
def fixed_runs(tmp_path, monkeypatch) -> str:
    monkeypatch.chdir(tmp_path)  # relative paths in what the screens print
    root = Path("runs")
    fake_run(root, "add-small", 1.0, 1.0)
    fake_run(root, "add-wide", 2.0, 0.8)
    sweep = RunDir(root / "add-small").sweeps_dir
    sweep.mkdir()
    rows = [{"r": r, "loss": 1.2 / r ** 0.5, "tokens_per_s": 9000.0, "acc@2": min(1, 0.2 * r), "acc@3": min(1, 0.1 * r),
             "acc": min(1, 0.15 * r)} for r in (1, 2, 4, 8, 16)]
    atomic_write_json(sweep / "step_00000200.json", {"run": "add-small", "step": 200, "rs": [1, 2, 4, 8, 16],
                                                    "complete": True, "time": 0, "rows": rows})
    (sweep / "step_00000200.csv").write_text("r,loss\n")
    # and levels never trained, as `recurlab sweep --difficulties 4,5` saves them: the heatmap merges both
    harder = [{"r": r, "loss": 2.0 / r ** 0.3, "tokens_per_s": 9000.0, "acc@4": min(1, 0.05 * r), "acc@5": min(1, 0.02 * r),
               "acc": min(1, 0.035 * r)} for r in (4, 16, 64)]
    atomic_write_json(sweep / "step_00000200_levels_4-5.json", {"run": "add-small", "step": 200, "rs": [4, 16, 64],
                                                               "complete": True, "time": 0, "rows": harder})
    (sweep / "step_00000200_levels_4-5.csv").write_text("r,loss\n")
    return "runs"


def app_for(runs_dir, run=None):
    from recurlab.tui import RecurlabApp

    return RecurlabApp(runs_dir=runs_dir, run=run)


def test_runs_screen(snap_compare, fixed_runs):
    async def keys(pilot):
        await pilot.press("down")
        await pilot.app.workers.wait_for_complete()  # the runs' run.yaml (their differing columns) load in a worker
        await pilot.pause()

    assert snap_compare(app_for(fixed_runs), terminal_size=SIZE, run_before=keys)


def test_curves_screen_overlay(snap_compare, fixed_runs):
    async def overlay(pilot):
        await pilot.press("a")
        for _ in range(100):
            await pilot.pause(0.05)
            if set(pilot.app.screen.drawn) == {"add-small", "add-wide"}:
                break
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(app_for(fixed_runs, "runs/add-small"), terminal_size=SIZE, run_before=overlay)


def test_curves_screen_eval_per_r_smoothed(snap_compare, fixed_runs):
    async def keys(pilot):
        for _ in range(100):
            await pilot.pause(0.05)
            if "add-small" in pilot.app.screen.drawn:
                break
        await pilot.app.workers.wait_for_complete()
        await pilot.press("m", "e")
        await pilot.pause()

    assert snap_compare(app_for(fixed_runs, "runs/add-small"), terminal_size=SIZE, run_before=keys)


def test_sweep_screen_shows_saved_sweep(snap_compare, fixed_runs):
    # the newest sweep (levels 4-5) in the table; [ shows the run's own levels; the heatmap holds both
    assert snap_compare(app_for(fixed_runs, "runs/add-small"), terminal_size=SIZE, press=["5", "left_square_bracket"])


def test_help_screen(snap_compare, fixed_runs):
    async def keys(pilot):
        await pilot.press("2")
        for _ in range(100):  # the Curves screen loads its plot after its first frame
            if pilot.app.screen.plot is not None:
                break
            await pilot.pause(0.05)
        await pilot.press("question_mark")
        await pilot.pause()
    assert snap_compare(app_for(fixed_runs), terminal_size=SIZE, run_before=keys)


def test_eval_screen_shows_saved_evaluation(snap_compare, fixed_runs):
    # a saved `recurlab eval` (task x r, exit histograms per task), as runner.EvalWriter writes it
    evals = RunDir(Path(fixed_runs) / "add-small").path / "evals"
    evals.mkdir()
    rows, hists = [], {}
    for t, (base, slope) in {"recurlab_addition_level2": (0.3, 0.2), "recurlab_addition_level3": (0.1, 0.15)}.items():
        for r in (1, 4, 8):
            rows.append({"task": t, "r": r, "metric": "exact_match,none", "value": min(1.0, base + slope * math.log2(r)),
                         "stderr": 0.03, "n": 32, "mean_iterations": min(r, 1.5 + slope * 10), "tokens": 96})
        hists[t] = {"8": {"2": 40, "3": 30, "4": 16, "8": 10}} if base > 0.2 else {"8": {"3": 20, "5": 40, "6": 26, "8": 10}}
    atomic_write_json(evals / "eval-20260101-000000.json", {
        "source": {"label": "add-small @ step 200"}, "rs": [1, 4, 8], "exit": "kl:5e-4", "complete": True,
        "time": 0, "rows": rows, "histograms": hists})
    assert snap_compare(app_for(fixed_runs, "runs/add-small"), terminal_size=(110, 40), press=["6"])


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("key", ["1", "2", "3", "4", "5", "6"])
def test_each_screen_shows_its_keys_at_width(snap_compare, fixed_runs, key, width):
    # the footer at the two common terminal widths: each screen's most used keys, then ? and q;
    # Inspect and Generate show why the hand-written run (no checkpoint) has no model to load
    async def keys(pilot):
        await pilot.press(key)
        for _ in range(100):
            await pilot.pause(0.05)
            if key != "2" or "add-small" in pilot.app.screen.drawn:
                break
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        pilot.app.clear_notifications()  # the error line stays; the notice's timing would vary
        await pilot.pause()

    assert snap_compare(app_for(fixed_runs, "runs/add-small"), terminal_size=(width, 24), run_before=keys)
