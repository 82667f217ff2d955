"""The TUI shows its keys and keeps its errors: at 80, 120 and 160 columns every screen's footer
shows all of its footer keys (none cut off before the command palette), `?` lists every key of the
screen, a failed action's reason stays in the error line until the next action, and the plots'
axes tick whole steps and r on a log2 scale."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from test_tui_snapshots import fake_run

pytestmark = pytest.mark.anyio

MODES = ("runs", "curves", "inspect", "generate", "sweep", "eval")


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def one_run(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    fake_run(Path("runs"), "add-small", 1.0, 1.0)
    return Path("runs")


async def settle(pilot, cond, tries=200):
    for _ in range(tries):
        await pilot.pause(0.05)
        if cond():
            return True
    return False


def expected_footer(screen) -> list[str]:
    """What the footer should show, from the bindings themselves: the screen's footer keys (base
    class first, as Textual merges them), then the app's."""
    from textual.binding import Binding

    keys = []
    for group in list(type(screen)._merge_bindings().key_to_bindings.values()) + [
            [b if isinstance(b, Binding) else Binding(*b) for b in type(screen.app).BINDINGS]]:
        for b in group:
            if b.show and b.description and b.description not in keys:
                keys.append(b.description)
    return keys


@pytest.mark.parametrize("width", [80, 120, 160])
async def test_every_screen_footer_fits_and_shows_its_keys(one_run, width):
    from textual.widgets import Footer
    from textual.widgets._footer import FooterKey

    from recurlab.tui import RecurlabApp

    app = RecurlabApp(runs_dir=one_run, run=one_run / "add-small")
    async with app.run_test(size=(width, 30)) as pilot:
        for mode in MODES:
            await pilot.press(str(MODES.index(mode) + 1))
            assert await settle(pilot, lambda: app.screen.query(Footer) and app.screen.query(FooterKey))
            await pilot.pause()
            screen = app.screen
            footer = screen.query_one(Footer)
            # the command palette's key sits at the right edge: every key must end before it
            palette = [k for k in footer.query(FooterKey) if k.has_class("-command-palette")]
            shown = [k for k in footer.query(FooterKey) if k not in palette]
            assert [k.description for k in shown] == expected_footer(screen), mode
            right_edge = min((k.region.x for k in palette), default=width)
            for key in shown:
                assert key.region.width > 0 and key.region.right <= right_edge, (mode, width, key.description)
            assert "Keys" in [k.description for k in shown]  # ? is always there


async def test_generate_screen_says_how_to_type_a_prompt(one_run):
    from textual.widgets import Footer, Input
    from textual.widgets._footer import FooterKey

    from recurlab.tui import RecurlabApp

    app = RecurlabApp(runs_dir=one_run, run=one_run / "add-small")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        assert await settle(pilot, lambda: app.screen.query(FooterKey))
        prompt = app.screen.query_one("#gen-prompt", Input)
        assert "/" in prompt.placeholder and "/" in str(prompt.border_title)
        first = app.screen.query_one(Footer).query(FooterKey).first()
        assert (first.key_display, first.description) == ("/", "Prompt")
        await pilot.press("slash")
        assert app.screen.focused is prompt


async def test_a_prompt_typed_while_the_model_loads_keeps_its_focus_and_text(one_run):
    from textual.widgets import Input

    from recurlab.tui import RecurlabApp

    app = RecurlabApp(runs_dir=one_run, run=one_run / "add-small")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("4")
        await pilot.pause()
        await pilot.press("slash", "7", "+", "8", "=")
        screen = app.screen
        prompt = screen.query_one("#gen-prompt", Input)
        assert screen.focused is prompt and prompt.value == "7+8="
        screen.on_model(None, [("1+2=", "3")])  # what the loader calls once the model is open
        await pilot.pause()
        assert screen.focused is prompt and prompt.value == "7+8="


async def test_help_lists_every_key_of_the_screen(one_run):
    from textual.screen import Screen
    from textual.widgets import Markdown

    from recurlab.tui import RecurlabApp
    from recurlab.tui.screens.help import HelpScreen

    app = RecurlabApp(runs_dir=one_run, run=one_run / "add-small")
    async with app.run_test(size=(120, 40)) as pilot:
        for mode in MODES:
            await pilot.press(str(MODES.index(mode) + 1))
            await pilot.pause()
            screen = app.screen
            # every key the screen declares; Textual's own screen keys (tab, ctrl+c) and ctrl+s where
            # there is no plot (Runs: it does nothing there) are not the screen's
            textual_own = {b.description for g in Screen._merge_bindings().key_to_bindings.values() for b in g}
            descriptions = [b.description for group in type(screen)._merge_bindings().key_to_bindings.values()
                            for b in group if b.description and b.description not in textual_own
                            and not (mode == "runs" and b.action == "save_figure")]
            hidden = [d for d in descriptions
                      if not any(b.show for g in type(screen)._merge_bindings().key_to_bindings.values() for b in g
                                 if b.description == d)]
            await pilot.press("question_mark")
            assert await settle(pilot, lambda: isinstance(app.screen, HelpScreen))
            text = app.screen.query_one(Markdown).source
            for d in descriptions:
                assert f"| {d} |" in text, (mode, d)
            assert hidden, mode  # every screen folds some keys behind ?
            await pilot.press("escape")
            assert await settle(pilot, lambda: not isinstance(app.screen, HelpScreen))


async def test_eval_without_lm_eval_keeps_the_reason_until_the_next_action(one_run, monkeypatch):
    from textual.widgets import Static

    from recurlab.tui import RecurlabApp

    monkeypatch.setitem(sys.modules, "lm_eval", None)  # `import lm_eval` fails, find_spec finds nothing
    app = RecurlabApp(runs_dir=one_run, run=one_run / "add-small")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("6")
        await pilot.pause()
        app.screen.set_focus(None)
        await pilot.press("s")
        line = app.screen.query_one("#error-line", Static)
        assert await settle(pilot, lambda: line.display)
        text = str(line.render())
        assert "lm-eval is not installed" in text and "pip install 'recurlab[eval]'" in text
        app.clear_notifications()  # the notice fades; the line does not
        await pilot.pause(0.3)
        assert line.display and "pip install" in str(line.render())
        await pilot.press("question_mark", "escape")  # the help is not an action on the screen
        await pilot.pause()
        assert line.display
        await pilot.press("right_square_bracket")  # the next action ends it
        assert await settle(pilot, lambda: not line.display)


def test_step_ticks_are_whole_round_numbers():
    from recurlab.tui.widgets.axes import step_ticks

    ticks, labels = step_ticks(1.0, 1600.0)
    assert ticks == [400.0, 800.0, 1200.0, 1600.0] and labels == ["400", "800", "1200", "1600"]
    ticks, labels = step_ticks(37.4, 206.2)  # (206 - 38) / 4 = 42 rounds up to a spacing of 50
    assert labels == ["50", "100", "150", "200"]
    assert all(float(lab) == t and t == int(t) for t, lab in zip(ticks, labels))
    assert step_ticks(3, 7) == ([3.0, 4.0, 5.0, 6.0, 7.0], ["3", "4", "5", "6", "7"])


def test_r_ticks_sit_on_a_log2_axis():
    from recurlab.tui.widgets.axes import log2_positions, r_ticks

    positions, labels = r_ticks([32, 1, 4, 8, 4])
    assert labels == ["1", "4", "8", "32"] and positions == [0.0, 2.0, 3.0, 5.0]
    # equal ratios of r are equal distances
    p = log2_positions([1, 2, 4, 8, 16, 32])
    assert all(math.isclose(b - a, 1.0) for a, b in zip(p, p[1:]))
