"""The Runs screen as a run table (differing columns, filter, pin, sort, group), the overview and
comparison screens, and Curves against tokens / wall-clock, train and eval loss together, and MFU.
Hand-written run directories, no worker."""

from __future__ import annotations

import pytest

from recurlab.config import load_profile, to_yaml
from recurlab.flops import train_flops_per_token
from recurlab.rundir import RunDir

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def make_run(root, name, overrides, created, loss0=3.0):
    cfg = load_profile("tiny", overrides)
    run = RunDir.create(root, name, to_yaml(cfg))
    rows = []
    for s in range(1, 11):
        rows.append({"kind": "train", "step": s, "time": 1000.0 + 30 * s, "loss": loss0 - 0.1 * s, "lr": 1e-3,
                     "tokens": 100 * s * s, "tokens_per_s": 500.0 + s, "r_no_grad": s % 3, "r_grad": 2, "seq_len": 12,
                     "grad_norm": 1.0, "step_time": 0.1})
        if s % 5 == 0:
            rows.append({"kind": "eval", "step": s, "time": 1000.0 + 30 * s, "r": 4, "loss": loss0 - 0.05 * s, "acc": 0.1 * s})
    run.append_metrics(rows)
    run.write_status(state="finished", created=created, step=10, max_steps=10, loss=rows[-2]["loss"], pid=None)
    return run


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "base-s0", ["train.seed=0"], 1.0, loss0=3.0)
    make_run(root, "base-s1", ["train.seed=1"], 2.0, loss0=2.5)
    make_run(root, "r16", ["train.r_mean=16", "hardware.peak_tflops=0.001"], 3.0, loss0=2.8)
    return root


async def settled(pilot):
    from recurlab.tui.screens.runs import REST_AFTER_S

    await pilot.pause(2 * REST_AFTER_S)  # the rows, sparklines and config columns after the first frame
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def names_and_cells(table):
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def test_runs_table_columns_filter_pin_sort_group(runs):
    from recurlab.tui import RecurlabApp

    app = RecurlabApp(runs_dir=runs)
    async with app.run_test(size=(140, 40)) as pilot:
        await settled(pilot)
        screen = app.screen
        table = screen.query_one("#runs-table")
        titles = [str(c.label) for c in table.columns.values()]
        assert titles[-3:] == ["r_mean", "seed", "peak_tflops"]  # the keys that differ among the three runs
        rows = names_and_cells(table)
        assert [r[0].strip() for r in rows] == ["base-s0", "base-s1", "r16"]
        assert [r[-3] for r in rows] == ["4", "4", "16"]

        await pilot.press("slash", *"r_mean=16", "enter")
        await settled(pilot)
        assert [r[0].strip() for r in names_and_cells(table)] == ["r16"]
        await pilot.press("slash", *["backspace"] * 9, *"state=finished seed=1", "enter")
        await settled(pilot)
        assert [r[0].strip() for r in names_and_cells(table)] == ["base-s1"]
        await pilot.press("slash", *["backspace"] * 30, *"bogus=1", "enter")  # a bad filter keeps the last one
        await settled(pilot)
        assert screen.filter.text == "state=finished seed=1"
        await pilot.press("escape")
        await pilot.press("slash", *["backspace"] * 30, "enter")
        await settled(pilot)
        assert table.row_count == 3

        await pilot.press("down", "down", "p")  # pin r16: first, in the overlay, marked *
        await settled(pilot)
        rows = names_and_cells(table)
        assert rows[0][0] == "*r16" and app.pinned == "r16" and "r16" in app.overlay

        await pilot.press("o", "o", "o", "o")  # run, state, step, loss: sorted by loss
        await settled(pilot)
        assert screen.sort_col == "loss"
        assert [r[0].strip(" *+") for r in names_and_cells(table)] == ["r16", "base-s1", "base-s0"]  # pinned stays first
        await pilot.press("p")  # unpin
        await pilot.press("O")
        await settled(pilot)
        assert [r[0].strip(" *+") for r in names_and_cells(table)] == ["base-s0", "r16", "base-s1"]

        await pilot.press("g", "g")  # group by --seeds family
        await settled(pilot)
        rows = names_and_cells(table)
        assert str(list(table.columns.values())[0].label) == "group"
        assert [(r[0], r[1].strip(" *+")) for r in rows] == [("base", "base-s0"), ("", "base-s1"), ("r16", "r16")]


async def test_compare_and_overview(runs):
    from recurlab.tui import RecurlabApp
    from recurlab.tui.screens.runinfo import CompareScreen, OverviewScreen

    app = RecurlabApp(runs_dir=runs)
    async with app.run_test(size=(140, 40)) as pilot:
        await settled(pilot)
        await pilot.press("c")  # nothing marked or pinned: says what to do
        assert not isinstance(app.screen, CompareScreen)
        await pilot.press("space", "down", "down", "space", "c")  # base-s0 and r16 in the overlay
        await settled(pilot)
        screen = app.screen
        assert isinstance(screen, CompareScreen) and (screen.a.name, screen.b.name) == ("base-s0", "r16")
        assert screen.diff == [("train.r_mean", 4, 16), ("hardware.peak_tflops", 0.0, 0.001)]
        assert "train loss" in screen.summary and "2 / 2" in screen.summary  # base-s0: last 2.0, best 2.0
        await pilot.press("escape", "v")
        await settled(pilot)
        screen = app.screen
        assert isinstance(screen, OverviewScreen) and screen.run.name == "r16"
        assert "recurlab_commit  not recorded" in screen.text  # a run from before environment.json
        assert "eval acc r=4" in screen.text and "r_mean: 16" in screen.text


async def test_curves_against_tokens_time_both_losses_and_mfu(runs):
    from recurlab.tui import RecurlabApp

    app = RecurlabApp(runs_dir=runs, run=runs / "r16")
    async with app.run_test(size=(140, 40)) as pilot:
        for _ in range(50):
            await settled(pilot)
            if app.screen.drawn:
                break
        screen = app.screen
        assert screen.drawn["r16"][0] == list(range(1, 11))
        await pilot.press("x")  # tokens seen
        await settled(pilot)
        assert screen.drawn["r16"][0] == [100.0 * s * s for s in range(1, 11)]
        await pilot.press("x")  # wall-clock minutes since the first row (30 s a step)
        await settled(pilot)
        assert screen.drawn["r16"][0] == pytest.approx([0.5 * s for s in range(10)])
        from recurlab.runlog.series import METRICS

        await pilot.press("x", *["m"] * len(METRICS))  # back to steps; past the plain metrics: train and eval loss
        await settled(pilot)
        assert sorted(screen.drawn) == ["eval r=4", "train"]
        assert screen.drawn["eval r=4"] == ([5.0, 10.0], pytest.approx([2.55, 2.3]))
        await pilot.press("m")  # MFU: hardware.peak_tflops=0.001 is 1e9 FLOP/s
        await settled(pilot)
        cfg = load_profile("tiny", ["train.r_mean=16"]).model
        want = [train_flops_per_token(cfg, s % 3, 2, 12) * (500.0 + s) / 1e9 for s in range(1, 11)]
        assert screen.drawn["r16"] == (list(range(1, 11)), pytest.approx(want))
        await pilot.press("L")  # log-log
        await settled(pilot)
        assert screen.loglog and screen.drawn["r16"][1] == pytest.approx(want)
