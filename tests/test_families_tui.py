"""The TUI on an Ouro folder (--model): the Inspector traces with the model's own gate exit and shows
the gate's exit distribution for the selected token."""

from __future__ import annotations

import pytest

from recurlab.families.writers import write_random_ouro
from test_tui import SIZE, make_app, notices, wait_for

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_inspector_shows_the_gate_exit_distribution(tmp_path):
    folder = write_random_ouro(tmp_path / "ouro", hidden=32, layers=2, heads=4, kv_heads=2, mlp=48, vocab=300,
                               steps=4, seed=11, gate_bias=-1.0)
    (tmp_path / "runs").mkdir()
    app = make_app(tmp_path / "runs", model=folder)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        screen = app.screen
        await wait_for(pilot, lambda: hasattr(screen, "lm"))
        assert screen.criteria[0] == "gate:0.9"
        await pilot.press("slash")
        screen.query_one("#insp-prompt").value = "12 + 34 ="
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.trace is not None or notices(app))
        assert not notices(app), notices(app)
        trace = screen.trace
        assert trace["r"] == 4 and trace["criterion"] == "gate:0.9"
        detail = str(screen.query_one("#insp-detail").render())
        assert "exit gate: P(exit at iteration k)" in detail and "exit (gate:0.9): iteration" in detail
        token = trace["tokens"][screen.query_one("TokenGrid").token]
        assert f"{token['exit_pdf'][0]:6.3f}" in detail
