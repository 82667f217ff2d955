"""Every file recurlab writes into a run directory gets the usual mode, 0666 less the umask, so
another user or a watcher with another uid can read a run: figures, evaluations, status files."""

from __future__ import annotations

import os
import stat

import pytest


@pytest.fixture
def group_writable_umask():
    old = os.umask(0o002)  # a umask that 0o644 would not honour: the expected mode is 0o664
    try:
        yield 0o666 & ~0o002
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_figures_evaluations_and_status_files_get_0666_less_the_umask(tmp_path, group_writable_umask):
    from recurlab.evaluation.results import EvalWriter
    from recurlab.figures.save import write_new
    from recurlab.rundir import atomic_write_text

    figure = write_new(tmp_path / "figures", "screen-sweep", {"svg": b"<svg/>", "csv": b"series,x,y\n"})
    evaluation = EvalWriter(tmp_path / "evals").save({"rows": []})
    atomic_write_text(tmp_path / "status.json", "{}\n")
    written = [*figure, evaluation, evaluation.with_suffix(".csv"), tmp_path / "status.json"]
    assert {p.name: mode(p) for p in written} == {p.name: group_writable_umask for p in written}
