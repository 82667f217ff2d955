"""Pilot test of the Eval screen (key 6): an evaluation fills in and is saved; a second one is
cancelled midway and keeps its finished rows; the first evaluation's files stay as they were."""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("lm_eval")

from recurlab.checkpoint import model_tensors, save_checkpoint  # noqa: E402
from recurlab.config import RunConfig, to_yaml, validate  # noqa: E402
from recurlab.rundir import RunDir  # noqa: E402
from test_engine_utils import tiny_config, trained_model  # noqa: E402

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def wait_for(pilot, cond, timeout=300.0, step=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await pilot.pause(step)
        if cond():
            return
    raise AssertionError(f"timed out waiting for {cond}")


def make_run(tmp_path) -> RunDir:
    model, tok = trained_model()
    cfg = RunConfig(profile="test", model=tiny_config())
    cfg.data.difficulties = [2]
    validate(cfg)
    run = RunDir.create(tmp_path / "runs", "add-tui", to_yaml(cfg))
    run.vocab_path.write_text(tok.to_json())
    save_checkpoint(run, 100, model_tensors(model), None, {"tokens": 0})
    folder = tmp_path / "tasks"
    folder.mkdir()
    docs = [{"prompt": f"{a}+{b}=", "answer": f"{a + b:03d}"} for a, b in ((12, 34), (7, 8), (45, 45), (1, 99), (60, 3))]
    (folder / "sums.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "sums.yaml").write_text(f"""task: tui_sums
dataset_path: json
dataset_kwargs:
  data_files:
    test: {folder / 'sums.jsonl'}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 4
metric_list:
  - metric: exact_match
""")
    return run


async def test_eval_screen_runs_cancels_and_keeps_saved_rows(tmp_path):
    from textual.widgets import DataTable, Input

    from recurlab.tui import RecurlabApp

    run = make_run(tmp_path)
    app = RecurlabApp(runs_dir=tmp_path / "runs", run=run.path)
    async with app.run_test(size=(150, 48)) as pilot:
        await pilot.press("6")
        await wait_for(pilot, lambda: app.current_mode == "eval")
        screen = app.screen
        assert screen.query_one("#eval-tasks", Input).value == "embedded"  # a task run offers its own task
        screen.query_one("#eval-folder", Input).value = str(tmp_path / "tasks")
        assert screen.scan_folder() == 1
        screen.query_one("#eval-tasks", Input).value = str(tmp_path / "tasks" / "sums.yaml")
        screen.query_one("#eval-rs", Input).value = "1,2,4,8"
        screen.set_focus(screen.query_one(DataTable))
        await pilot.press("s")
        await wait_for(pilot, lambda: screen.cancel_event is None and len(screen.saved) == 1)
        table = screen.query_one(DataTable)
        assert table.row_count == 1 and len(table.columns) == 5  # task, r=1, 2, 4, 8
        first = screen.saved[0]
        assert first["complete"] and [row["r"] for row in first["rows"]] == [1, 2, 4, 8]
        hist = first["histograms"]["tui_sums"]["8"]
        assert sum(hist.values()) > 0 and max(int(k) for k in hist) <= 8  # exit kl:5e-4 is the default
        assert len(screen.query_one("#eval-hists").children) == 1
        before = {p.name: p.read_bytes() for p in (run.path / "evals").glob("eval-*")}

        # a second evaluation, cancelled once its first r is in
        screen.query_one("#eval-rs", Input).value = "1,2,3,4,5,6,7,8"
        await pilot.press("s")
        await wait_for(pilot, lambda: len(screen.rows) >= 1)
        await pilot.press("c")
        await wait_for(pilot, lambda: screen.cancel_event is None)
        assert len(screen.saved) == 2
        second = screen.saved[-1]
        assert not second["complete"] and 1 <= len(second["rows"]) < 8
        for name, body in before.items():
            assert (run.path / "evals" / name).read_bytes() == body
        await pilot.press("left_square_bracket")
        assert screen.rows == first["rows"]
