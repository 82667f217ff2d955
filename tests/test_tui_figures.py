"""Pilot tests of ctrl+s: the Curves, Sweep and Inspector screens save their plot as figures
(through the same code as `recurlab plot`) and the screen as SVG into the run's figures/ folder,
and a notice says where. Runs are the small synthetic ones of figure_runs.py.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
from pathlib import Path

import pytest

from figure_runs import make_figure_runs, png_size

pytest.importorskip("matplotlib")
pytestmark = pytest.mark.anyio
SIZE = (120, 40)


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    return make_figure_runs(tmp_path_factory.mktemp("tuifig") / "runs")


@pytest.fixture
def runs(made, tmp_path) -> Path:
    root = tmp_path / "runs"
    shutil.copytree(made, root)
    return root


async def wait_for(pilot, cond, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await pilot.pause(0.1)
        if cond():
            return
    raise AssertionError(f"timed out waiting for {cond}")


def saved_notice(app) -> str:
    found = [n.message for n in app._notifications if n.message.startswith("saved to ")]
    return found[-1] if found else ""


def csv_rows(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text())))


async def test_ctrl_s_on_curves_saves_the_drawn_lines(runs):
    from recurlab.tui import RecurlabApp

    figs = runs / "alpha" / "figures"
    app = RecurlabApp(runs_dir=runs, run=runs / "alpha")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: "alpha" in screen.drawn)
        await pilot.press("m", "m", "e")  # eval accuracy per r, smoothed
        await wait_for(pilot, lambda: "r=4" in screen.drawn)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: saved_notice(app))
        notice = saved_notice(app)
    stem = "curves-eval-acc-alpha"
    assert f"saved to {figs}" in notice and f"{stem}.{{png,svg,pdf,csv}}" in notice and "screen-curves.svg" in notice
    assert png_size(figs / f"{stem}.png") == (960, 600)
    svg = (figs / f"{stem}.svg").read_text()
    assert "r=1" in svg and "training step" in svg and "EMA span 0.05" in svg and "alpha (step 120)" in svg
    # the figure's lines are the ones on screen: same smoothing, same points
    rows = csv_rows(figs / f"{stem}.csv")
    for label, (xs, ys) in screen.drawn.items():
        assert [(float(x), float(y)) for s, x, y in rows[1:] if s == label] == pytest.approx(list(zip(xs, ys)), rel=1e-12)
    shot = (figs / "screen-curves.svg").read_text()
    assert shot.lstrip().startswith("<svg") and "eval&#160;accuracy&#160;per&#160;r" in shot


async def test_ctrl_s_on_sweep_saves_accuracy_and_loss_vs_r_and_never_overwrites(runs):
    from recurlab.tui import RecurlabApp

    figs = runs / "alpha" / "figures"
    app = RecurlabApp(runs_dir=runs, run=runs / "alpha")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        screen = app.screen
        await wait_for(pilot, lambda: screen.rows)
        await pilot.press("left_square_bracket")  # the standard sweep (levels 2, 3), not the level-4 one
        await wait_for(pilot, lambda: len(screen.rows) == 5)
        for _ in range(2):
            app.clear_notifications()
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: saved_notice(app))
        notice = saved_notice(app)
    assert "sweep-acc-alpha-2.{png,svg,pdf,csv}" in notice and "sweep-loss-alpha-2" in notice and "screen-sweep-2.svg" in notice
    assert "sweep-heatmap-alpha-step120-2" in notice  # the Sweep screen's level x r heatmap too
    for stem in ("sweep-acc-alpha", "sweep-acc-alpha-2", "sweep-loss-alpha"):
        assert png_size(figs / f"{stem}.png") == (960, 600)
        assert (figs / f"{stem}.pdf").stat().st_size > 0
    svg = (figs / "sweep-acc-alpha.svg").read_text()
    assert "level 2" in svg and "level 3" in svg and "alpha (checkpoint step 120)" in svg and "r (core iterations" in svg
    saved = json.loads((runs / "alpha" / "sweeps" / "step_00000120.json").read_text())["rows"]
    rows = csv_rows(figs / "sweep-acc-alpha.csv")
    assert [(float(x), float(y)) for s, x, y in rows[1:] if s == "level 2"] == [(row["r"], row["acc@2"]) for row in saved]
    assert (figs / "screen-sweep.svg").exists() and (figs / "screen-sweep-2.svg").exists()
    # the screen's heatmap is the one `recurlab plot sweep-heatmap` draws from the same files
    from recurlab.figures import csv_text
    from recurlab.figures.sweeps import saved_level_heatmap
    from recurlab.rundir import RunDir

    assert (figs / "sweep-heatmap-alpha-step120.csv").read_text() == csv_text(saved_level_heatmap(RunDir(runs / "alpha")))


async def test_ctrl_s_on_inspector_saves_heatmap_and_pca_and_is_inert_without_a_plot(runs):
    from recurlab.tui import RecurlabApp

    trace = json.loads((runs / "alpha" / "traces" / "long-a.json").read_text())
    figs = runs / "alpha" / "figures"
    app = RecurlabApp(runs_dir=runs, run=runs / "alpha")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("1", "ctrl+s")  # the Runs screen has no plot: the key does nothing
        await pilot.pause(0.3)
        assert not figs.exists() and not saved_notice(app)
        await pilot.press("3")
        screen = app.screen
        await pilot.press("ctrl+s")  # nothing traced yet: a notice, and the screen is still saved
        await wait_for(pilot, lambda: saved_notice(app))
        assert any("no trace shown yet" in n.message for n in app._notifications)
        app.clear_notifications()
        screen._show_trace(trace)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: saved_notice(app))
    t = trace["n_prompt"]
    assert png_size(figs / "heatmap-rel-change-inspector.png") == (960, 600)
    assert png_size(figs / f"pca-inspector-token{t}.png") == (960, 600)
    assert "core iteration" in (figs / "heatmap-rel-change-inspector.svg").read_text()
    assert (figs / "screen-inspect.svg").exists() and (figs / "screen-inspect-2.svg").exists()


async def test_ctrl_s_on_eval_saves_metric_vs_r_and_exit_histograms(runs):
    from recurlab.tui import RecurlabApp

    figs = runs / "alpha" / "figures"
    record = json.loads((runs / "alpha" / "evals" / "eval-20261130-150000.json").read_text())
    app = RecurlabApp(runs_dir=runs, run=runs / "alpha")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        screen = app.screen
        await wait_for(pilot, lambda: len(getattr(screen, "rows", [])) == len(record["rows"]))
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: saved_notice(app))
        notice = saved_notice(app)
    assert "evals-alpha-eval-20261130-150000.{png" in notice and "exits-alpha-eval-20261130-150000-r16.{png" in notice
    assert "screen-eval.svg" in notice
    assert png_size(figs / "exits-alpha-eval-20261130-150000-r16.png") == (960, 600)
    rows = csv_rows(figs / "exits-alpha-eval-20261130-150000-r16.csv")
    hist = record["histograms"]["perm_l4"]["16"]
    assert {int(it): int(n) for label, it, n, _s in rows[1:] if label.startswith("perm_l4")} == \
        {i: hist.get(str(i), 0) for i in range(1, 17)}
    assert "perm_l1" in (figs / "evals-alpha-eval-20261130-150000.svg").read_text()


async def test_ctrl_s_on_generate_saves_the_replayed_wavefront(runs):
    from recurlab.tui import RecurlabApp

    figs = runs / "alpha" / "figures"
    record = json.loads((runs / "alpha" / "wavefronts" / "wavefront-1.json").read_text())
    app = RecurlabApp(runs_dir=runs, run=runs / "alpha")
    async with app.run_test(size=(140, 48)) as pilot:
        await pilot.press("4")
        screen = app.screen
        await pilot.press("ctrl+s")  # no wavefront yet: a notice says how to get one
        await wait_for(pilot, lambda: any("no wavefront shown" in n.message for n in app._notifications))
        screen.set_focus(None)
        await pilot.press("o")  # replay the saved wavefront
        await wait_for(pilot, lambda: screen.query_one("#gen-wave").data is not None)
        app.clear_notifications()
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "wavefront-alpha-wavefront-1" in saved_notice(app))
    rows = csv_rows(figs / "wavefront-alpha-wavefront-1.csv")
    got = {(int(i), int(pos)): float(v) for i, _label, pos, v in rows[1:] if v != ""}
    assert got == {(i, s["first"] + j): float(n) for i, s in enumerate(record["steps"]) for j, n in enumerate(s["iterations"])}
    assert png_size(figs / "wavefront-alpha-wavefront-1.png") == (960, 600)
    assert (figs / "screen-generate.svg").exists()
