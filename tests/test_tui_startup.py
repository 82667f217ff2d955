"""What the TUI's first frame waits for: a plain `recurlab tui` command line is parsed without
typer (whose option handling imports pydantic), the first screen's modules import no numpy,
plotext, yaml or torch, and everything else still reaches typer. Also the plot widget's own
ANSI reader, which must paint exactly what rich's decoder reads from plotext's output."""

from __future__ import annotations

import subprocess
import sys

import pytest

from recurlab.cli.tuistart import parse_plain, tui_paths
from recurlab.rundir import DEFAULT_RUNS_DIR, RunDir, RunError


def test_plain_tui_command_lines_are_parsed_and_the_rest_left_to_typer():
    default = {"target": None, "runs_dir": DEFAULT_RUNS_DIR, "model": None}
    assert parse_plain(["tui"]) == default
    assert parse_plain(["tui", "cpu-1"]) == {**default, "target": "cpu-1"}
    assert parse_plain(["tui", "--runs-dir", "r", "x", "--model=m"]) == {"target": "x", "runs_dir": "r", "model": "m"}
    assert parse_plain(["tui", "--runs-dir=a=b"]) == {**default, "runs_dir": "a=b"}
    for argv in (["runs"], [], ["tui", "--help"], ["tui", "-h"], ["tui", "a", "b"], ["tui", "--runs-dir"],
                 ["tui", "--model", "--runs-dir", "r"], ["tui", "--unknown", "x"], ["tui", "--", "x"]):
        assert parse_plain(argv) is None, argv


def test_tui_paths_resolve_runs_and_refuse_what_is_not_a_run(tmp_path):
    runs = tmp_path / "runs"
    run = RunDir.create(runs, "cpu-1", "profile: tiny\n")
    assert tui_paths("cpu", str(runs), None) == (str(runs), run.path, None)  # a prefix of a run name
    assert tui_paths(str(run.path), "elsewhere", None) == (str(runs), run.path, None)
    assert tui_paths(str(runs), DEFAULT_RUNS_DIR, None) == (str(runs), None, None)  # a runs directory
    with pytest.raises(RunError, match="no run 'gpu'"):
        tui_paths("gpu", str(runs), None)
    with pytest.raises(ValueError, match="does not exist"):
        tui_paths(None, str(runs), str(tmp_path / "no-model"))


def test_plain_path_errors_and_help_from_the_real_command(cli, tmp_path):
    (tmp_path / "runs").mkdir()
    res = cli("tui", "nope", "--runs-dir", tmp_path / "runs")
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        f"error: no run 'nope' in {tmp_path / 'runs'}: see `recurlab runs --runs-dir {tmp_path / 'runs'}` or pass a run directory path"]
    res = cli("tui", "--help")  # not a plain form: typer's help
    assert res.returncode == 0 and "Usage" in res.stdout and "--runs-dir" in res.stdout


def test_first_screens_import_no_heavy_modules():
    code = ("import sys\n"
            "import recurlab.cli, recurlab.cli.tuistart, recurlab.tui.app\n"
            "import recurlab.tui.screens.curves, recurlab.tui.screens.runs\n"
            "print(sorted(m for m in ('numpy', 'plotext', 'textual_plotext', 'yaml', 'torch', 'typer', 'pydantic')"
            " if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_plot_strips_paint_what_rich_decodes_from_plotext():
    import plotext
    from rich.console import Console
    from rich.style import Style
    from rich.text import Text

    from recurlab.tui.widgets.stripplot import ansi_strips

    fig = plotext._figure._figure_class()
    fig.plotsize(70, 20)
    xs = list(range(1, 200))
    fig.plot(xs, [4 / (1 + x / 50) for x in xs], label="loss", color="cyan", marker="hd")
    fig.plot(xs, [1 + (x % 7) / 10 for x in xs], label="other", color=(250, 120, 0), marker="dot")
    fig.title("train loss")
    text = fig.build()
    lines = text.split("\n")
    strips = ansi_strips(text, 70, 22)
    assert len(strips) == 22 and all(s.cell_length == 70 for s in strips)
    console = Console(width=200, color_system="truecolor")

    def cells(segments):
        return [(ch, seg.style or Style()) for seg in segments for ch in seg.text]

    for strip, line in zip(strips, lines):
        ref = cells(Text.from_ansi(line).render(console))[:70]
        assert cells(strip)[: len(ref)] == ref
    assert len(text.splitlines()) == 20 and [s.text.strip() for s in strips[20:]] == ["", ""]  # padded with blank lines
