"""Pilot test of the Generate screen's parallel sampler: toggle, parameters, live wavefront, the
sequential answer beside it, saving without overwriting, and replay with the arrow keys."""

from __future__ import annotations

import pytest

from test_tui import anyio_backend, make_app, notices, runs, trained, wait_for  # noqa: F401  (fixtures)

SIZE = (140, 48)
pytestmark = pytest.mark.anyio


async def test_parallel_generation_wavefront_save_and_replay(runs):  # noqa: F811
    from recurlab.engine import Engine, GenerateOptions, open_model
    from recurlab.engine.wavefronts import load_wavefront
    from recurlab.options.parallel import SCREEN_PARAMS
    from recurlab.tui.screens.generate import MAX_NEW_TOKENS
    from recurlab.tui.widgets.genview import GenerationCard
    from recurlab.tui.widgets.wavefront import WavefrontView

    prompt = "23+45="
    opened = open_model(runs / "tiny-a", device="cpu")
    model, tok = opened.model, opened.tokenizer
    engine = Engine(model, tok)
    want_par = engine.generate(prompt, GenerateOptions(r=4, max_new_tokens=MAX_NEW_TOKENS, sampler=f"parallel:{SCREEN_PARAMS}"))
    want_seq = engine.generate(prompt, GenerateOptions(r=4, max_new_tokens=MAX_NEW_TOKENS))
    app = make_app(runs, run=runs / "tiny-a")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        screen = app.screen
        await wait_for(pilot, lambda: hasattr(screen, "lm"))
        params = screen.query_one("#gen-params")
        wave = screen.query_one("#gen-wave", WavefrontView)
        assert not params.display and not wave.display
        await pilot.press("p")
        assert params.display and wave.display and "sampler: parallel" in str(screen.query_one("#gen-options").render())
        screen.query_one("#gen-prompt").value = prompt
        await pilot.press("g")
        await wait_for(pilot, lambda: len(screen.results) == 2)  # the parallel answer, then the sequential one
        par_card, seq_card = list(screen.query(GenerationCard))
        assert par_card.header.startswith("parallel") and seq_card.header.startswith("sequential")
        assert par_card.result.token_ids == want_par.token_ids and seq_card.text == want_seq.text
        assert "passes/token" in str(par_card.render())
        # the live view saw every outer step, and the last one froze the last token
        steps = wave.data["steps"]
        assert len(steps) == want_par.parallel["outer_steps"] == wave.step
        assert sum(s["frozen"] for s in steps) == want_par.parallel["rows"][0]["tokens"]
        drawn = str(wave.render())
        assert "outer step" in drawn and "froze" in drawn
        wave.focus()
        await pilot.press("left", "left")
        assert wave.step == len(steps) - 2
        await pilot.press("home")
        assert wave.step == 1 and "outer step 1/" in str(wave.render())
        # save twice: two files, none overwritten; then replay the newest
        await pilot.press("w")
        await pilot.press("w")
        folder = runs / "tiny-a" / "wavefronts"
        files = sorted(folder.glob("*.json"))
        assert len(files) == 2 and all(load_wavefront(f)["steps"] == load_wavefront(files[0])["steps"] for f in files)
        await pilot.press("o")
        assert wave.has_focus and not wave.live and wave.step == 1
        await pilot.press("right")
        assert wave.step == 2
        await pilot.press("end")
        assert wave.step == len(load_wavefront(files[0])["steps"])
        # bad parameters: one notice, no new answer
        await pilot.press("a")
        params.value = "inner=0,freeze=latent:0.03"
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert any("inner iterations must be >= 1" in m for m in notices(app))
        assert len(list(screen.query(GenerationCard))) == 2 and len(screen.results) == 2
