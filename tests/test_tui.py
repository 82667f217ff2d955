"""Pilot tests of the TUI against real run directories trained with the tiny profile.

Each test drives the app with keys and checks what a user would see: table cells, the points
the curve draws, the inspector's cell details, generated text (compared with the engine called
directly), the sweep file. Workers the tests start are killed by pid at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import kill_workers
from recurlab.rundir import RunDir

SIZE = (120, 40)
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """A runs directory with one finished tiny run ('tiny-a', checkpoints at 20 and 40)."""
    import torch

    from recurlab.config import load_profile, to_yaml
    from recurlab.worker import run_worker

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tui") / "runs"
    cfg = load_profile("tiny", ["train.max_steps=40", "train.eval_every=20", "train.checkpoint_every=20", "train.log_every=2"])
    run = RunDir.create(root, "tiny-a", to_yaml(cfg), device="cpu")
    assert run_worker(run.path) == 0
    assert run.read_status()["state"] == "finished"
    return root


@pytest.fixture
def runs(trained, tmp_path) -> Path:
    """A private copy of the trained runs directory (tests may add, stop, delete runs)."""
    root = tmp_path / "runs"
    shutil.copytree(trained, root)
    yield root
    kill_workers(root)


def make_app(runs_dir, run=None, **kw):
    from recurlab.tui import RecurlabApp

    return RecurlabApp(runs_dir=runs_dir, run=run, **kw)


async def wait_for(pilot, cond, timeout=60.0, step=0.1):
    """Let the app run until cond() is true (workers and timers keep going meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await pilot.pause(step)
        if cond():
            return
    raise AssertionError(f"timed out waiting for {cond}")


def notices(app) -> list[str]:
    return [n.message for n in app._notifications]


def copy_run(root: Path, src: str, dst: str, **status) -> RunDir:
    shutil.copytree(root / src, root / dst)
    run = RunDir(root / dst)
    run.write_status(name=dst, created=time.time() + 1, **status)
    return run


# ---- Runs screen ------------------------------------------------------------------------------


async def test_runs_table_updates_live_and_opens_a_run(runs):
    from textual.widgets import DataTable

    app = make_app(runs)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(DataTable)
        assert table.row_count == 1
        name, state, step, loss, tps, spark = (str(c) for c in table.get_row("tiny-a"))
        assert "tiny-a" in name and state == "finished" and step == "40/40"
        assert float(loss) > 0
        # a sparkline of recent losses, read right after the first frame
        await wait_for(pilot, lambda: str(table.get_row("tiny-a")[5]).strip() != "")
        # a run appears, then crashes: the table follows and a notice says so
        other = copy_run(runs, "tiny-a", "tiny-b", state="running", pid=os.getpid(), heartbeat=time.time())
        await wait_for(pilot, lambda: table.row_count == 2 and str(table.get_row("tiny-b")[1]) == "running")
        other.write_status(state="failed", error="RuntimeError: boom")
        await wait_for(pilot, lambda: str(table.get_row("tiny-b")[1]) == "failed"
                       and any("tiny-b failed" in m and "boom" in m for m in notices(app)))
        # deleted under the TUI: row removed, notice, no crash
        shutil.rmtree(other.path)
        # the notice is a message the app handles after the row goes: wait for both
        await wait_for(pilot, lambda: table.row_count == 1 and any("tiny-b was deleted" in m for m in notices(app)))
        # space marks for the overlay, enter opens the curves of the run
        await pilot.press("space")
        assert app.overlay == ["tiny-a"] and str(table.get_row("tiny-a")[0]).startswith("+")
        await pilot.press("space")
        assert app.overlay == []
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.current_mode == "curves")
        assert app.current_run.name == "tiny-a"


async def test_runs_columns_grow_to_fit_their_content(runs):
    """A value that outgrows its column (a long run's step count, a fast run's tokens/s) is shown
    whole, not cut."""
    from textual.widgets import DataTable

    run = RunDir(runs / "tiny-a")
    app = make_app(runs)
    async with app.run_test(size=(160, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        run.write_status(state="running", pid=os.getpid(), heartbeat=time.time(), step=284, max_steps=200000,
                         tokens_per_s=1575000.0)
        await wait_for(pilot, lambda: str(table.get_row("tiny-a")[2]) == "284/200000")
        await pilot.pause(0.2)
        widths = {str(col.key.value): col.content_width for col in table.columns.values()}
        assert widths["step"] >= len("284/200000") and widths["tok/s"] >= len("1,575,000"), widths


async def test_runs_stop_resume_and_new_run_keys(runs):
    from textual.widgets import DataTable, Input, Select

    live = copy_run(runs, "tiny-a", "tiny-live", state="running", pid=os.getpid(), heartbeat=time.time())
    stopped = copy_run(runs, "tiny-a", "tiny-stopped", state="stopped", pid=None)
    shutil.rmtree(stopped.checkpoint_dir_for(40))  # stopped at step 20, before max_steps (40)
    # a worker to kill with K: a process whose command line names recurlab, in its own session
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "recurlab"], start_new_session=True)
    doomed = copy_run(runs, "tiny-a", "tiny-doomed", state="running", pid=victim.pid, heartbeat=time.time())
    app = make_app(runs)
    try:
        async with app.run_test(size=SIZE) as pilot:
            table = app.screen.query_one(DataTable)
            await wait_for(pilot, lambda: table.row_count == 4)
            table.move_cursor(row=table.get_row_index("tiny-live"))
            await pilot.press("s")
            assert live.stop_requested()
            assert any("stop requested" in m for m in notices(app))
            # stopping a finished run is refused with a notice
            table.move_cursor(row=table.get_row_index("tiny-a"))
            await pilot.press("s")
            assert any("not running" in m for m in notices(app))
            # K kills a worker at once (its process group), as `recurlab stop --now` does
            table.move_cursor(row=table.get_row_index("tiny-doomed"))
            await pilot.press("K")
            await wait_for(pilot, lambda: victim.poll() is not None and doomed.read_status().get("state") == "stopped")
            assert victim.returncode == -signal.SIGKILL and "killed by the TUI" in doomed.read_status()["error"]
            assert any("tiny-doomed: killed" in m for m in notices(app))
            # a run whose checkpoint reached max_steps is finished, whatever its status says
            table.move_cursor(row=table.get_row_index("tiny-a"))
            RunDir(runs / "tiny-a").status_path.write_text("garbage{{")
            await pilot.press("u")
            await wait_for(pilot, lambda: any("reached train.max_steps=40" in m for m in notices(app)))
            # resume spawns a real worker that continues from the step-20 checkpoint
            table.move_cursor(row=table.get_row_index("tiny-stopped"))
            await pilot.press("u")
            await wait_for(pilot, lambda: stopped.read_status().get("pid") is not None)
            await wait_for(pilot, lambda: stopped.read_status().get("state") == "finished", timeout=90)
            assert "resuming" in stopped.log_path.read_text()
            # n opens the new-run dialog; a bad override is a notice, a good one starts a run
            await pilot.press("n")
            await pilot.pause()
            dialog = app.screen
            dialog.query_one("#newrun-profile", Select).value = "tiny"
            dialog.query_one("#newrun-overrides", Input).value = "train.max_steps=nope"
            dialog.query_one("#newrun-name", Input).value = "fresh"
            await pilot.click("#newrun-start")
            assert any("new run" in m for m in notices(app)) and app.screen is dialog
            dialog.query_one("#newrun-overrides", Input).value = "train.max_steps=3"
            dialog.query_one("#newrun-overrides", Input).focus()
            await pilot.press("enter")  # enter in a field starts it too
            await wait_for(pilot, lambda: "fresh" in table.rows)
            fresh = RunDir(runs / "fresh")
            assert fresh.read_status().get("pid")
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.wait()
        kill_workers(runs)


# ---- Curves screen ------------------------------------------------------------------------------


async def test_curves_follow_the_file_and_keys_change_the_plot(runs):
    run = RunDir(runs / "tiny-a")
    app = make_app(runs, run=run.path)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert screen.TITLE_SHORT == "Curves"
        await wait_for(pilot, lambda: "tiny-a" in screen.drawn)
        xs, ys = screen.drawn["tiny-a"]
        assert xs[-1] == 40 and len(xs) == len(run.read_metrics("train"))
        # a row appended to metrics.jsonl appears in the curve within a couple of seconds
        run.append_metrics([{"kind": "train", "step": 41, "time": time.time(), "loss": 0.123, "lr": 1e-4}])
        await wait_for(pilot, lambda: screen.drawn["tiny-a"][0][-1] == 41, timeout=10)
        assert screen.drawn["tiny-a"][1][-1] == pytest.approx(0.123)
        # a torn last line is not drawn until it is complete
        with open(run.metrics_path, "a") as f:
            f.write('{"kind": "train", "step": 42, "ti')
        await pilot.pause(1.5)
        assert screen.drawn["tiny-a"][0][-1] == 41
        # m: eval loss per r -> one line per r
        await pilot.press("m")
        assert set(screen.drawn) == {"r=1", "r=4"}
        assert screen.drawn["r=4"][0] == [20.0, 40.0]
        await pilot.press("m")
        assert "accuracy" in str(screen.query_one("#curves-info").render())
        await pilot.press("M", "M")  # back to train loss
        raw = screen.drawn["tiny-a"][1]
        await pilot.press("e")  # smoothing: same ends, flatter middle
        smooth = screen.drawn["tiny-a"][1]
        assert screen.smooth and smooth[0] == raw[0] and smooth != raw
        assert max(smooth) - min(smooth) <= max(raw) - min(raw)
        await pilot.press("right_square_bracket")
        assert screen.span == 3
        await pilot.press("l")
        assert screen.logy and "log y on" in str(screen.query_one("#curves-info").render())
        # truncation (as a resume does) reloads instead of duplicating
        rows = run.read_metrics()[:10]
        run.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        await wait_for(pilot, lambda: any("truncated" in m for m in notices(app)), timeout=10)
        await wait_for(pilot, lambda: len(screen.drawn.get("tiny-a", ([], []))[0]) == sum(r["kind"] == "train" for r in rows))


async def test_curves_overlay_keeps_a_color_per_run(runs):
    copy_run(runs, "tiny-a", "tiny-b")
    app = make_app(runs, run=runs / "tiny-a")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: "tiny-a" in screen.drawn)
        color_a = app.run_color("tiny-a")
        await pilot.press("a")  # overlay all runs
        await wait_for(pilot, lambda: set(screen.drawn) == {"tiny-a", "tiny-b"})
        assert app.run_color("tiny-a") == color_a != app.run_color("tiny-b")
        await pilot.press("m")  # eval per r of two runs: labelled by run and r
        assert "tiny-b r=4" in screen.drawn
        # a deleted run gives a notice and the screen keeps working
        shutil.rmtree(runs / "tiny-b")
        await wait_for(pilot, lambda: any("tiny-b was deleted" in m for m in notices(app)), timeout=10)
        assert app.overlay == ["tiny-a"] and set(screen.drawn) == {"r=1", "r=4"}
        await pilot.press("m")


# ---- Inspector ----------------------------------------------------------------------------------


async def test_inspector_grid_and_cell_details(runs):
    from recurlab.tui.widgets.tokengrid import TokenGrid

    app = make_app(runs, run=runs / "tiny-a")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        screen = app.screen
        assert screen.TITLE_SHORT == "Inspector"
        await wait_for(pilot, lambda: screen.trace is not None)  # a held-out example is traced
        grid = screen.query_one(TokenGrid)
        detail = screen.query_one("#insp-detail")
        trace = screen.trace
        assert trace["r"] == 4 and trace["prompt"] == screen.examples[0][0]
        # the grid's selection reaches the detail pane in a message after the trace
        await wait_for(pilot, lambda: "top next tokens" in str(detail.render()))
        start = str(detail.render())
        assert f"iteration {trace['r']}/{trace['r']}" in start and "top next tokens" in start
        await pilot.press("left")
        assert grid.iteration == trace["r"] - 1
        moved = str(detail.render())
        assert moved != start and f"iteration {trace['r'] - 1}/" in moved
        top = trace["tokens"][grid.token]["top"][grid.iteration - 1][0]
        assert f"{top['p']:6.3f}" in moved
        await pilot.press("up")
        assert grid.token == trace["n_prompt"] - 1 and f"token {grid.token} " in str(detail.render())
        await pilot.press("k")
        assert grid.metric == "kl_final" and "KL to final" in str(detail.render())
        await pilot.press("home")
        await pilot.press("p")  # play steps through the iterations
        await wait_for(pilot, lambda: grid.iteration == trace["r"], timeout=10)
        await pilot.press("o")  # overlay random starts: the trace is redone with path independence
        await wait_for(pilot, lambda: (screen.trace or {}).get("path_independence") is not None)
        assert screen.trace["path_independence"]["starts"] == 4
        await pilot.press("c")
        await wait_for(pilot, lambda: screen.trace["criterion"].startswith("kl-rev"))
        await pilot.press("c")
        await wait_for(pilot, lambda: screen.trace["criterion"].startswith("entropy"))
        # a typed prompt, and a bad one (a character outside the vocabulary) is a notice
        await pilot.press("slash")
        screen.query_one("#insp-prompt").value = "12+7="
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.trace["prompt"] == "12+7=")
        await pilot.press("slash")
        screen.query_one("#insp-prompt").value = "12+7=§"
        await pilot.press("enter")
        await wait_for(pilot, lambda: any(m.startswith("trace:") for m in notices(app)))
        await pilot.press("n")  # next example


async def test_inspector_traces_a_prompt_typed_while_the_model_loads(runs):
    import threading

    app = make_app(runs, run=runs / "tiny-a")
    release, load = threading.Event(), app.model_cache.get

    def slow_load(path):
        release.wait(30)
        return load(path)

    app.model_cache.get = slow_load
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        screen = app.screen
        await pilot.press("slash", *"12+7=", "enter")  # before the model is there: a notice, the text stays
        await wait_for(pilot, lambda: "the model is not loaded yet" in notices(app))
        release.set()
        await wait_for(pilot, lambda: screen.trace is not None)
        assert screen.trace["prompt"] == "12+7="  # not replaced by the first held-out example
        prompt = screen.query_one("#insp-prompt")
        assert prompt.value == "12+7=" and f"e.g. {screen.examples[-1][0]} " in prompt.placeholder


# ---- Generate -----------------------------------------------------------------------------------


async def test_generate_at_r1_and_r8_matches_the_engine(runs):
    from recurlab.engine import Engine, GenerateOptions, open_model
    from recurlab.tui.screens.generate import MAX_NEW_TOKENS
    from recurlab.tui.widgets.genview import GenerationCard
    from recurlab.tui.widgets.slider import Slider

    prompt = "23+45="
    opened = open_model(runs / "tiny-a", device="cpu")
    model, tok = opened.model, opened.tokenizer
    engine = Engine(model, tok)
    expected = {r: engine.generate(prompt, GenerateOptions(r=r, max_new_tokens=MAX_NEW_TOKENS)) for r in (1, 8)}
    app = make_app(runs, run=runs / "tiny-a")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        screen = app.screen
        await wait_for(pilot, lambda: hasattr(screen, "lm"))
        slider = screen.query_one(Slider)
        assert (slider.minimum, slider.maximum, slider.value) == (1, 16, 4)  # 1 .. 4 x r_mean
        assert screen.query_one("#gen-prompt").value  # a held-out prompt to start with
        await pilot.press("slash")
        screen.query_one("#gen-prompt").value = ""
        await pilot.press(*prompt, "enter")  # generates at r_mean, then focuses the slider
        await wait_for(pilot, lambda: len(screen.results) == 1)
        await pilot.press("home")
        assert slider.value == 1
        await pilot.press("g")
        await wait_for(pilot, lambda: len(screen.results) == 2)
        for _ in range(7):
            await pilot.press("right")
        assert slider.value == 8
        await pilot.press("g")
        await wait_for(pilot, lambda: len(screen.results) == 3)
        cards = list(screen.query(GenerationCard))
        assert [c.header.split()[0] for c in cards] == ["r=4", "r=1", "r=8"]  # side by side
        for card, r in zip(cards[1:], (1, 8)):
            assert card.text == expected[r].text
            assert card.result.token_ids == expected[r].token_ids
            assert [i for _p, i in card.pieces] == expected[r].iterations[0]
            assert "tok/s" in str(card.render()) and "mean it" in str(card.render())
        # options: exit criterion and KV budget reach the engine; speculative + exit is refused
        await pilot.press("e", "v", "t")
        assert screen.options(8).exit == "kl:5e-4" and screen.options(8).kv_budget == 1 and screen.options(8).continuous
        await pilot.press("g")
        await wait_for(pilot, lambda: len(screen.results) == 4)
        assert max(screen.results[-1].iterations[0]) <= 8
        await pilot.press("d", "g")
        assert any("speculative" in m for m in notices(app))
        await pilot.press("x")
        await pilot.pause()
        assert not list(screen.query(GenerationCard))
        # c: compiled decode steps reach the engine's options and the card title (tests/test_compiled.py
        # checks that they give the eager tokens)
        assert not screen.options(8).compile
        await pilot.press("c")
        assert screen.options(8).compile and "compiled" in screen.describe(8)


async def test_generate_several_prompts_depth_batched(runs):
    """Prompts separated by | get one card each; under an exit rule they are depth batched, and each
    card holds what the prompt generates alone."""
    from recurlab.engine import Engine, GenerateOptions, open_model
    from recurlab.tui.screens.generate import MAX_NEW_TOKENS
    from recurlab.tui.widgets.genview import GenerationCard

    prompts = ["23+45=", "7+8=", "60+31="]
    opened = open_model(runs / "tiny-a", device="cpu")
    model, tok = opened.model, opened.tokenizer
    engine = Engine(model, tok)
    expected = [engine.generate(p, GenerateOptions(r=4, max_new_tokens=MAX_NEW_TOKENS, exit="kl:5e-4")) for p in prompts]
    app = make_app(runs, run=runs / "tiny-a")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        screen = app.screen
        await wait_for(pilot, lambda: hasattr(screen, "lm"))
        await pilot.press("e", "slash")
        screen.query_one("#gen-prompt").value = " | ".join(prompts)
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(screen.results) == 1)
        assert screen.results[0].depth is not None
        cards = list(screen.query(GenerationCard))
        assert [c.prompt for c in cards] == prompts and all("depth batch" in c.header for c in cards)
        for card, want in zip(cards, expected):
            assert card.text == want.text and [i for _p, i in card.pieces] == want.iterations[0]
            assert "over 3 prompts" in str(card.render())


# ---- Sweep --------------------------------------------------------------------------------------


async def test_sweep_runs_saves_and_shows_again(runs):
    from textual.widgets import DataTable

    run = RunDir(runs / "tiny-a")
    app = make_app(runs, run=run.path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        screen = app.screen
        assert "no saved sweeps" in str(screen.query_one("#sweep-status").render())
        assert screen.query_one("#sweep-rs").value == "1,2,4,8,16"
        screen.query_one("#sweep-rs").value = "1,2,4"
        await pilot.press("c")
        assert any("no sweep is running" in m for m in notices(app))
        await pilot.press("s")
        await wait_for(pilot, lambda: screen.cancel_event is None and screen.saved, timeout=60)
        assert (run.sweeps_dir / "step_00000040.csv").exists()
        saved = json.loads((run.sweeps_dir / "step_00000040.json").read_text())
        assert [row["r"] for row in saved["rows"]] == [1, 2, 4] and saved["complete"]
        table = screen.query_one(DataTable)
        assert table.row_count == 3 and str(table.get_row_at(2)[0]) == "4"
    # next time: the saved sweep is shown without running anything
    app = make_app(runs, run=run.path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        screen = app.screen
        assert screen.query_one(DataTable).row_count == 3
        assert "saved sweep 1/1 of step 40" in str(screen.query_one("#sweep-status").render())
        await pilot.press("left_square_bracket")


async def test_a_second_sweep_keeps_the_first_and_the_screen_shows_the_newest(runs):
    from textual.widgets import DataTable

    run = RunDir(runs / "tiny-a")
    run.sweeps_dir.mkdir()
    # an older saved sweep whose name sorts after the new one's
    (run.sweeps_dir / "step_00000040_levels_3.json").write_text(json.dumps(
        {"run": "tiny-a", "step": 40, "rs": [7], "complete": True, "time": time.time() - 100,
         "rows": [{"r": 7, "loss": 1.0, "tokens_per_s": 1.0, "acc@3": 0.5, "acc": 0.5}]}))
    app = make_app(runs, run=run.path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        screen = app.screen
        for rs in ("1,2,4", "1,2"):
            screen.query_one("#sweep-rs").value = rs
            await pilot.press("s")
            await wait_for(pilot, lambda: screen.cancel_event is None and len(screen.saved) >= 2, timeout=60)
            await wait_for(pilot, lambda: screen.cancel_event is None, timeout=60)
            table = screen.query_one(DataTable)
            assert [str(table.get_row_at(i)[0]) for i in range(table.row_count)] == rs.split(",")
        status = str(screen.query_one("#sweep-status").render())
        assert "saved sweep 3/3 of step 40" in status and "step_00000040_2.csv" in status
    first = json.loads((run.sweeps_dir / "step_00000040.json").read_text())
    second = json.loads((run.sweeps_dir / "step_00000040_2.json").read_text())
    assert [r["r"] for r in first["rows"]] == [1, 2, 4] and [r["r"] for r in second["rows"]] == [1, 2]


async def test_sweep_can_be_cancelled(runs):
    run = RunDir(runs / "tiny-a")
    app = make_app(runs, run=run.path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        screen = app.screen
        screen.query_one("#sweep-rs").value = ",".join(["1"] + ["256"] * 39)  # long enough to cancel in time
        await pilot.press("s")
        await wait_for(pilot, lambda: len(screen.rows) >= 1)
        await pilot.press("c")
        await wait_for(pilot, lambda: screen.cancel_event is None, timeout=60)
        saved = json.loads((run.sweeps_dir / "step_00000040.json").read_text())
        assert not saved["complete"] and 1 <= len(saved["rows"]) < 40
        # a notice is a message to the app: it shows on the app's next turn
        await wait_for(pilot, lambda: any("sweep cancelled" in m for m in notices(app)), timeout=10)


async def test_sweep_heatmap_shows_trained_and_harder_levels(runs):
    from recurlab.sweep import load_sweeps
    from recurlab.tui.widgets.heatmap import SweepHeatmap

    run = RunDir(runs / "tiny-a")
    app = make_app(runs, run=run.path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        screen = app.screen
        screen.query_one("#sweep-rs").value = "1,4"
        screen.query_one("#sweep-levels").value = "0"
        await pilot.press("s")
        assert screen.cancel_event is None and any(">= 1" in m for m in notices(app))
        screen.query_one("#sweep-levels").value = ""
        await pilot.press("s")
        await wait_for(pilot, lambda: screen.cancel_event is None and screen.saved, timeout=60)
        screen.query_one("#sweep-rs").value = "1,4,16"
        screen.query_one("#sweep-levels").value = "5,4"
        await pilot.press("s")
        await wait_for(pilot, lambda: screen.cancel_event is None and len(screen.saved) == 2, timeout=60)
        text = str(screen.query_one(SweepHeatmap).render())
    saved = {lv: {row["r"]: row[f"acc@{lv}"] for row in res.rows for k in row if k == f"acc@{lv}"}
             for res in load_sweeps(run) for lv in (2, 3, 4, 5) if f"acc@{lv}" in res.rows[0]}
    assert sorted(saved) == [2, 3, 4, 5] and sorted(saved[5]) == [1, 4, 16]
    lines = {line.split("level ")[1].split()[0]: line for line in text.splitlines() if "level " in line}
    for lv, by_r in saved.items():
        line = lines[str(lv)]
        assert line.startswith("▸" if lv > 3 else " "), line  # tiny trains levels 2 and 3
        cells = line.split()[2:]
        want = [f"{100 * by_r[r]:.1f}" if r in by_r else "·" for r in (1, 4, 16)]
        assert cells == want, (line, want)
    assert "never trained: 4, 5" in text and "4▾" in text  # r_mean 4 is marked


# ---- every screen: help, palette, small terminals -----------------------------------------------


async def test_help_palette_and_small_terminal(runs):
    from recurlab.tui.screens.help import HelpScreen

    app = make_app(runs, run=runs / "tiny-a")
    async with app.run_test(size=(80, 24)) as pilot:
        for key, title in (("1", "Runs"), ("2", "Curves"), ("3", "Inspector"), ("4", "Generate"), ("5", "Sweep")):
            await pilot.press(key)
            screen = app.screen
            assert screen.TITLE_SHORT == title
            commands = [c.title for c in app.get_system_commands(screen)]
            assert "Go to Inspector" in commands
            assert any(c.startswith(f"{title}: ") for c in commands), commands
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            body = app.screen.query_one("Markdown")
            assert title in body.source and "| key | action |" in body.source
            await pilot.press("escape")
            assert app.screen is screen
        await app.workers.wait_for_complete()


# ---- pure helpers -------------------------------------------------------------------------------


def test_series_columns_downsample_and_time_weighted_ema():
    import numpy as np

    from recurlab.runlog.series import RunSeries, downsample, ema
    from recurlab.runlog.watch import sparkline

    s = RunSeries()
    kept = s.add_rows([
        {"kind": "train", "step": 1, "time": 0.0, "loss": 3.0, "lr": 1e-3},
        {"kind": "train", "step": 2, "time": 1.0, "loss": None},  # missing value -> NaN, dropped when drawn
        {"kind": "eval", "step": 2, "time": 1.0, "r": 4, "loss": 2.5, "acc": 0.5},
        {"kind": "train", "time": 2.0, "loss": 1.0},  # no step: skipped
        {"kind": "other", "step": 3},
    ])
    assert kept == 3 and s.eval_rs() == [4]
    xs, ys = s.series("train", "loss")
    assert xs.tolist() == [1.0] and ys.tolist() == [3.0]
    assert len(s.train["step"]) == len(s.train["loss"]) == 2  # columns stay aligned
    # min/max downsampling keeps a one-point spike and the newest point
    xs = np.arange(100_001, dtype=float)
    ys = np.ones_like(xs)
    ys[55_555] = 50.0
    dx, dy = downsample(xs, ys, 100)
    assert len(dx) <= 201 and dy.max() == 50.0 and dx[-1] == 100_000
    # time-weighted EMA: the same curve logged at uneven steps smooths to the same values
    even_x = np.arange(0, 200, 1.0)
    uneven_x = np.concatenate([np.arange(0, 100, 1.0), np.arange(100, 200, 5.0)])
    f = lambda x: np.where(x < 100, 1.0, 0.0)
    e1, e2 = ema(even_x, f(even_x), 20.0), ema(uneven_x, f(uneven_x), 20.0)
    assert abs(e1[-1] - e2[-1]) < 0.01 and e1[0] == 1.0 and 0 < e1[-1] < 0.01
    assert sparkline([1, 2, 3]) == "▁▅█" and sparkline([]) == ""


def test_metrics_source_reads_in_chunks_and_survives_truncation(tmp_path, monkeypatch):
    from recurlab.runlog import metrics

    monkeypatch.setattr(metrics, "CHUNK_BYTES", 256)
    run = RunDir.create(tmp_path, "r", "profile: tiny\n")
    run.append_metrics([{"kind": "train", "step": s, "time": s, "loss": 1.0 / s} for s in range(1, 101)])
    src = metrics.MetricsSource(run)
    chunks = 0
    while src.update():
        chunks += 1
    assert chunks > 10 and src.series.rows == 100
    run.metrics_path.write_text(json.dumps({"kind": "train", "step": 1, "time": 0, "loss": 9.0}) + "\n")
    while src.update():
        pass
    assert src.events == ["truncated"] and src.snapshot("train", "loss")[1].tolist() == [9.0]
    shutil.rmtree(run.path)
    assert not src.update() and src.events[-1] == "deleted"


def test_tui_command_rejects_bad_targets_with_one_line(tmp_path):
    from typer.testing import CliRunner

    import recurlab.cli.runs  # noqa: F401  (with two or more commands typer dispatches by name)
    import recurlab.cli.tui  # noqa: F401
    from recurlab.cli.app import app

    runner = CliRunner()
    res = runner.invoke(app, ["tui", "nosuch", "--runs-dir", str(tmp_path)])
    assert res.exit_code == 2 and "no run 'nosuch'" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["tui", "--runs-dir", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(app, ["tui", "--runs-dir", str(tmp_path), "--model", str(tmp_path / "nomodel")])
    assert res.exit_code == 2 and "--model" in res.output


async def test_generate_with_a_model_folder_instead_of_a_run(tmp_path):
    """--model: a Huginn-format folder drives Generate (and Inspector) without any run."""
    from recurlab.engine import Engine, GenerateOptions
    from recurlab.engine import open_model
    from recurlab.families.writers import write_random_huginn
    from recurlab.tui.screens.generate import MAX_NEW_TOKENS

    folder = write_random_huginn(tmp_path / "huginn", n_embd=32, n_heads=2, mean_recurrence=2, vocab_size=256,
                                 tokenizer_vocab=256, block_size=64)
    opened = open_model(folder, device="cpu")
    model, tok = opened.model, opened.tokenizer
    expected = Engine(model, tok).generate("hello", GenerateOptions(r=3, max_new_tokens=MAX_NEW_TOKENS))
    (tmp_path / "runs").mkdir()
    app = make_app(tmp_path / "runs", model=folder)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        screen = app.screen
        await wait_for(pilot, lambda: hasattr(screen, "lm"))
        assert screen.query_one("#gen-r").maximum == 8  # 4 x mean_recurrence
        screen.query_one("#gen-r").value = 3
        screen.query_one("#gen-prompt").value = "hello"
        await pilot.press("g")
        await wait_for(pilot, lambda: len(screen.results) == 1)
        assert screen.results[0].text == expected.text and screen.results[0].token_ids == expected.token_ids


async def test_half_written_run_gives_notices_not_crashes(runs):
    from textual.widgets import DataTable

    broken = runs / "broken"
    broken.mkdir()
    (broken / "run.yaml").write_text("model: [unclosed\n")
    (broken / "status.json").write_text('{"state": "runn')
    (broken / "metrics.jsonl").write_text('{"kind": "train", "step": 1, "time": 0, "loss": 2.0}\n{"kind": "tr')
    app = make_app(runs)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: "broken" in table.rows)
        assert str(table.get_row("broken")[1]) == "unreadable"
        table.move_cursor(row=table.get_row_index("broken"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: "broken" in app.screen.drawn)
        assert app.screen.drawn["broken"][0] == [1.0]  # the complete row, not the torn one
        await pilot.press("5")
        await wait_for(pilot, lambda: any(m.startswith("sweep:") for m in notices(app)))
        await pilot.press("3")
        await wait_for(pilot, lambda: any(m.startswith("loading the model:") for m in notices(app)))
        await pilot.press("4")
        await pilot.press("1")
        assert app.screen.TITLE_SHORT == "Runs"


async def test_status_files_of_the_wrong_shape_show_as_rows_not_crashes(runs):
    """Valid JSON of the wrong shape: the Runs screen drops the ill-typed fields, as readers do."""
    from textual.widgets import DataTable

    shapes = {"list": "[1, 2]", "pid": '{"state": "running", "pid": "abc", "host": "%s"}' % os.uname().nodename,
              "created": '{"state": "finished", "created": "yesterday"}', "heartbeat": '{"state": "running", "heartbeat": "soon"}'}
    for name, text in shapes.items():
        shutil.copytree(runs / "tiny-a", runs / name)
        (runs / name / "status.json").write_text(text)
    app = make_app(runs)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: all(name in table.rows for name in shapes))
        states = {name: str(table.get_row(name)[1]) for name in shapes}
        assert states == {"list": "unreadable", "pid": "lost", "created": "finished", "heartbeat": "lost"}, states
        assert app.is_running
