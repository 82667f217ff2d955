"""The curves screen's speed machinery: the derived series cache beside a run (rebuilt when the
log grows, is truncated or replaced; never trusted over the log), the tail preview of a large
log, min/max-per-column downsampling, and redraw throttling (nothing redrawn when nothing
changed, at most 2 redraws a second while rows stream in)."""

from __future__ import annotations

import os
import random
import time

import numpy as np
import pytest

from recurlab.rundir import RunDir, parse_jsonl
from recurlab.runlog import metrics
from recurlab.runlog.cache import SeriesCache, cache_path
from recurlab.runlog.metrics import MetricsSource
from recurlab.runlog.series import downsample

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def rows(first: int, last: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed + first)
    out = []
    for s in range(first, last + 1):
        out.append({"kind": "train", "step": s, "time": 1e9 + s * 0.01, "loss": 4.0 / s + rng.random() * 0.1,
                    "lr": 1e-3, "tokens_per_s": 2500 + rng.random(), "grad_norm": rng.random()})
        if s % 10 == 0:
            out += [{"kind": "eval", "step": s, "time": 1e9 + s, "r": r, "loss": 1.0 / s + r, "acc": rng.random()}
                    for r in (1, 4)]
    return out


def expected(run: RunDir, kind: str, field: str, r=None) -> tuple[list, list]:
    """The series computed independently: every complete JSON line of the log, parsed here."""
    body = run.metrics_path.read_bytes()
    body = body[: body.rfind(b"\n") + 1]
    pts = [(row["step"], row[field]) for row in parse_jsonl(body)
           if row.get("kind") == kind and (r is None or row.get("r") == r) and row.get(field) is not None]
    return [float(x) for x, _ in pts], [float(y) for _, y in pts]


def load(run: RunDir) -> MetricsSource:
    src = MetricsSource(run)
    while src.update():
        pass
    return src


def same_as_log(src: MetricsSource, run: RunDir) -> bool:
    for kind, field, r in (("train", "loss", None), ("train", "grad_norm", None), ("eval", "acc", 4), ("eval", "loss", 1)):
        xs, ys = src.snapshot(kind, field, r)
        if (xs.tolist(), ys.tolist()) != expected(run, kind, field, r):
            return False
    return True


@pytest.fixture
def run(tmp_path, monkeypatch) -> RunDir:
    monkeypatch.setattr(metrics, "CACHE_MIN_BYTES", 0)  # cache even a small log
    run = RunDir.create(tmp_path, "r", "profile: tiny\n")
    run.append_metrics(rows(1, 300))
    return run


def test_cache_is_written_then_used_and_equals_the_log(run):
    first = load(run)
    assert not first.from_cache and cache_path(run.metrics_path).exists()
    assert same_as_log(first, run)
    again = load(run)
    assert again.from_cache and again.series.rows == first.series.rows and same_as_log(again, run)


def test_cache_follows_a_growing_log_parsing_only_the_new_bytes(run, monkeypatch):
    load(run)
    covered = SeriesCache(run.metrics_path).load()[1]
    run.append_metrics(rows(301, 400))
    parsed = []
    real = metrics.MetricsTail.read_new

    def spy(self, max_bytes=None):
        start = self.offset
        out = real(self, max_bytes)
        parsed.append((start, self.offset))
        return out

    monkeypatch.setattr(metrics.MetricsTail, "read_new", spy)
    src = load(run)
    assert src.from_cache and parsed[0] == (covered, run.metrics_path.stat().st_size)  # the new bytes only
    assert same_as_log(src, run)
    # the rewritten cache now covers the grown log
    assert SeriesCache(run.metrics_path).load()[1] == run.metrics_path.stat().st_size


def test_cache_is_rebuilt_when_the_log_is_truncated_or_replaced(run):
    load(run)
    # a resume drops rows past its checkpoint with one atomic rewrite (a new, shorter file)
    run.truncate_metrics_after(150)
    assert SeriesCache(run.metrics_path).load() is None
    src = load(run)
    assert not src.from_cache and same_as_log(src, run) and src.snapshot("train", "loss")[0][-1] == 150
    # truncated in place (same inode, shorter)
    load(run)
    with open(run.metrics_path, "r+b") as f:
        f.truncate(f.seek(0, os.SEEK_END) // 2)
    assert SeriesCache(run.metrics_path).load() is None
    src = load(run)
    assert not src.from_cache and same_as_log(src, run)


def test_cache_is_never_trusted_over_the_log(run):
    load(run)
    # rewritten in place with different values and the same length: the samples' checksum differs
    body = run.metrics_path.read_bytes()
    changed = body.replace(b'"lr": 0.001', b'"lr": 0.002')
    assert len(changed) == len(body) and changed != body
    with open(run.metrics_path, "r+b") as f:
        f.write(changed)
    assert SeriesCache(run.metrics_path).load() is None
    src = load(run)
    assert not src.from_cache and src.snapshot("train", "lr")[1][0] == 0.002
    # a damaged cache file is ignored, not an error
    cache_path(run.metrics_path).write_bytes(b"PK\x03\x04 not really a zip")
    src = load(run)
    assert not src.from_cache and same_as_log(src, run)


def test_torn_last_line_is_skipped_and_never_cached(run):
    with open(run.metrics_path, "a") as f:
        f.write('{"kind": "train", "step": 301, "time": 1, "lo')
    src = load(run)
    assert src.snapshot("train", "loss")[0][-1] == 300
    hit = SeriesCache(run.metrics_path).load()
    assert hit is not None and hit[1] < run.metrics_path.stat().st_size  # ends before the torn line
    with open(run.metrics_path, "a") as f:
        f.write('ss": 0.5}\n')
    src = load(run)
    assert src.from_cache and src.snapshot("train", "loss")[0][-1] == 301 and same_as_log(src, run)


def test_large_log_shows_its_tail_first(run, monkeypatch):
    monkeypatch.setattr(metrics, "PREVIEW_BYTES", 2048)
    monkeypatch.setattr(metrics, "CHUNK_BYTES", 4096)
    src = MetricsSource(run, use_cache=False)
    assert src.update() and src.loading
    xs, _ = src.snapshot("train", "loss")
    assert xs[-1] == 300 and len(xs) < 300  # the newest rows, before the head has loaded
    src.update()
    xs, _ = src.snapshot("train", "loss")
    assert xs[0] == 1 and xs[-1] == 300 and np.all(np.diff(xs) > 0)  # head so far, then the tail
    while src.update():
        pass
    assert not src.loading and same_as_log(src, run)


def test_a_source_says_when_a_read_would_find_nothing(run):
    src = MetricsSource(run)
    assert not src.unchanged()  # never read
    src.update()
    assert not src.unchanged()  # not caught up yet
    while src.update():
        pass
    assert src.unchanged()
    with open(run.metrics_path, "a") as f:
        f.write('{"kind": "train", "st')  # a torn line: the file grew, a read is due
    assert not src.unchanged()
    with open(run.metrics_path, "a") as f:
        f.write('ep": 301, "time": 1, "loss": 0.5}\n')
    while src.update():
        pass
    assert src.unchanged() and src.snapshot("train", "loss")[0][-1] == 301
    run.truncate_metrics_after(100)  # replaced by a shorter file
    assert not src.unchanged()
    src.update()
    assert src.events == ["truncated"]


def test_downsampling_keeps_every_columns_extremes():
    rng = np.random.default_rng(0)
    xs = np.cumsum(rng.integers(1, 5, 50_000)).astype(float)  # uneven steps
    ys = rng.normal(size=xs.size)
    ys[123] = 40.0
    ys[40_000] = -40.0
    dx, dy = downsample(xs, ys, 100)
    assert len(dx) <= 202 and dx[0] == xs[0] and dx[-1] == xs[-1] and np.all(np.diff(dx) > 0)
    assert dy.max() == 40.0 and dy.min() == -40.0
    # every column of the x range keeps its own lowest and highest point (computed here directly)
    width = (xs[-1] - xs[0]) / 100
    col = np.minimum(((xs - xs[0]) // width).astype(int), 99)
    dcol = np.minimum(((dx - xs[0]) // width).astype(int), 99)
    for c in np.unique(col):
        assert dy[dcol == c].max() == ys[col == c].max() and dy[dcol == c].min() == ys[col == c].min()
    short = np.arange(10.0)
    assert downsample(short, short, 100)[0] is short


async def test_curves_redraw_nothing_when_idle_and_at_most_twice_a_second_while_streaming(run, monkeypatch):
    from recurlab.tui import RecurlabApp

    reads = []  # MetricsSource.update calls (in the reading worker)
    real_update = MetricsSource.update
    monkeypatch.setattr(MetricsSource, "update", lambda self: reads.append(1) or real_update(self))
    app = RecurlabApp(runs_dir=run.path.parent, run=run.path)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        deadline = time.monotonic() + 60
        while "r" not in screen.drawn and time.monotonic() < deadline:
            await pilot.pause(0.1)
        assert screen.drawn["r"][0][-1] == 300
        await pilot.pause(1.5)
        before, renders, n_reads = screen.redraws, screen.query_one("#curves-plot").renders, len(reads)
        await pilot.pause(3.0)  # nothing new: no read (a stat a second), no redraw, no render
        assert screen.redraws == before and screen.query_one("#curves-plot").renders == renders
        assert len(reads) == n_reads
        # rows streaming in every 0.1 s for 3 s: the plot follows, at most 2 redraws a second
        t0, step = time.monotonic(), 301
        while time.monotonic() - t0 < 3.0:
            run.append_metrics(rows(step, step))
            step += 1
            await pilot.pause(0.1)
        deadline = time.monotonic() + 15
        while screen.drawn["r"][0][-1] != step - 1 and time.monotonic() < deadline:
            await pilot.pause(0.1)
        assert screen.drawn["r"][0][-1] == step - 1
        assert 1 <= screen.redraws - before <= 2 * (time.monotonic() - t0) + 1
        # a key still redraws at once
        n = screen.redraws
        await pilot.press("l")
        assert screen.redraws == n + 1
        await app.workers.wait_for_complete()
