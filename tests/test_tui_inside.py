"""The Inspector's keys inside the loop: lenses, a patch at the selected cell from a source prompt,
undo, the causal trace view and its figure, and the verdict / radius column."""

from __future__ import annotations

import json

import pytest

from test_tui import SIZE, make_app, notices, runs, trained, wait_for  # noqa: F401  (fixtures)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_inspector_lenses_patch_undo_and_causal_trace(runs):  # noqa: F811
    from recurlab.tui.widgets.causalmap import CausalMap
    from recurlab.tui.widgets.tokengrid import TokenGrid

    app = make_app(runs, run=runs / "tiny-a")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        screen = app.screen
        await wait_for(pilot, lambda: screen.trace is not None)
        clean = screen.trace
        await wait_for(pilot, lambda: all(t["radius"] is not None for t in clean["tokens"]))
        assert all(t["verdict"]["kind"] in ("settling", "orbiting", "drifting") for t in clean["tokens"])
        grid = screen.query_one(TokenGrid)
        assert " dyn ρ" in str(grid.render()).splitlines()[0]
        assert "dynamics:" in str(screen.query_one("#insp-detail").render())

        await pilot.press("l")  # the logit lens: same states, another readout
        await wait_for(pilot, lambda: screen.trace is not clean and screen.trace["lens"] == "logit")
        logit = screen.trace
        assert [t["rel_change"] for t in logit["tokens"]] == [t["rel_change"] for t in clean["tokens"]]

        prompt = logit["prompt"]
        source = next(p for p, _ in screen.examples if len(p) == len(prompt) and p != prompt)
        await pilot.press("s")
        screen.query_one("#insp-source").value = source
        await pilot.press("escape")
        grid.focus()
        grid.select(logit["n_prompt"] - 1, 2)
        await pilot.press("a")
        await wait_for(pilot, lambda: screen.intervention is not None)
        rec = screen.intervention
        assert rec["type"] == "patch" and rec["token"] == logit["n_prompt"] - 1 and rec["iteration"] == 2
        assert screen.trace is rec["trace"] and grid.trace is rec["trace"]
        assert "patched token" in str(screen.query_one("#insp-detail").render())
        saved = list((runs / "tiny-a" / "interventions").glob("patch-*.json"))
        assert len(saved) == 1 and json.loads(saved[0].read_text())["delta"] == rec["delta"]
        await pilot.press("u")
        assert screen.intervention is None and screen.trace is logit

        await pilot.press("t")
        await wait_for(pilot, lambda: screen.view == "causal")
        ct = screen.causal
        assert ct["corrupt_prompt"] == source and len(ct["recovery"]) == len(logit["tokens"])
        assert screen.query_one(CausalMap).display and not grid.display
        await pilot.press("ctrl+s")
        figs = runs / "tiny-a" / "figures"
        await wait_for(pilot, lambda: figs.is_dir() and any(figs.glob("causal-trace-inspector.png")), timeout=60)
        await pilot.press("t")
        assert screen.view == "grid" and grid.display

        await pilot.press("l")  # tuned: this run has none yet, which is a notice naming the command
        await wait_for(pilot, lambda: any("lens train" in m for m in notices(app)))
