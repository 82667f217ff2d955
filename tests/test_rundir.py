"""The run-directory contract as readers see it: atomic status, tolerant metrics, run lookup, liveness."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from recurlab.rundir import (
    STALE_AFTER_S, MetricsTail, RunDir, RunError, create_new, list_runs, new_run_name, resolve_run, write_new,
)


def make_run(root, name, created=None):
    run = RunDir.create(root, name, "profile: tiny\n")
    if created is not None:
        run.write_status(created=created)
    return run


def test_create_writes_config_and_starting_status(tmp_path):
    run = make_run(tmp_path, "a")
    assert run.config_path.read_text() == "profile: tiny\n"
    st = run.read_status()
    assert st["state"] == "starting" and st["name"] == "a" and st["contract"] == 2
    before = {p.name: p.read_bytes() for p in run.path.iterdir()}
    with pytest.raises(RunError, match="already exists"):
        RunDir.create(tmp_path, "a", "profile: other\n")
    assert {p.name: p.read_bytes() for p in run.path.iterdir()} == before


def test_status_is_replaced_atomically(tmp_path):
    run = make_run(tmp_path, "a")
    inode = run.status_path.stat().st_ino
    run.write_status(step=5, loss=1.5)
    assert run.status_path.stat().st_ino != inode  # a new file renamed over the old one
    assert run.read_status()["step"] == 5 and run.read_status()["state"] == "starting"
    assert not [p for p in run.path.iterdir() if p.name.endswith(".tmp")]
    # a reader sees the old or the new status, never a partial one: a half-written file reads as empty
    run.status_path.write_text('{"state": "runn')
    assert run.read_status() == {}


def test_metrics_tail_is_incremental_and_skips_a_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail(path)
    assert tail.read_new() == []  # missing file
    with open(path, "w") as f:
        f.write(json.dumps({"kind": "train", "step": 1}) + "\n" + '{"kind": "train", "st')
    assert [r["step"] for r in tail.read_new()] == [1]
    assert tail.read_new() == []  # the torn line is not returned until it is complete
    with open(path, "a") as f:
        f.write('ep": 2}\n' + json.dumps({"kind": "eval", "step": 2}) + "\n")
    assert [(r["kind"], r["step"]) for r in tail.read_new()] == [("train", 2), ("eval", 2)]
    assert tail.read_new() == []


def test_metrics_tail_restarts_on_truncated_or_replaced_file(tmp_path):
    run = make_run(tmp_path, "a")
    run.append_metrics([{"kind": "train", "step": s} for s in range(1, 11)])
    tail = MetricsTail(run.metrics_path)
    assert len(tail.read_new()) == 10
    run.truncate_metrics_after(4)  # what resume does: an atomic replacement with fewer rows
    assert [r["step"] for r in tail.read_new()] == [1, 2, 3, 4]
    run.append_metrics([{"kind": "train", "step": 5}])
    assert [r["step"] for r in tail.read_new()] == [5]
    with open(run.metrics_path, "w") as f:  # truncated in place to a shorter file
        f.write(json.dumps({"kind": "train", "step": 1}) + "\n")
    assert [r["step"] for r in tail.read_new()] == [1]


def test_resolve_run_by_name_prefix_path_and_ambiguity(tmp_path):
    a = make_run(tmp_path, "alpha-1", created=1)
    make_run(tmp_path, "alpha-2", created=2)
    b = make_run(tmp_path, "beta", created=3)
    assert resolve_run("beta", tmp_path).path == b.path
    assert resolve_run("be", tmp_path).path == b.path
    assert resolve_run(str(a.path), "/nonexistent").path == a.path
    assert resolve_run("alpha-1", tmp_path).path == a.path  # an exact name wins over a longer prefix match
    with pytest.raises(RunError, match="ambiguous.*alpha-1.*alpha-2"):
        resolve_run("alpha", tmp_path)
    with pytest.raises(RunError, match="no run 'gamma'"):
        resolve_run("gamma", tmp_path)
    assert [r.name for r in list_runs(tmp_path)] == ["alpha-1", "alpha-2", "beta"]
    assert new_run_name("beta", tmp_path).startswith("beta-")


def test_effective_state_failed_for_dead_pid_and_lost_for_stale_heartbeat(tmp_path):
    run = make_run(tmp_path, "a")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    run.write_status(state="running", pid=proc.pid, host=socket.gethostname(), heartbeat=time.time())
    assert run.effective_state() == "failed"

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run.write_status(pid=live.pid, heartbeat=time.time())
        assert run.effective_state() == "running"
        run.write_status(heartbeat=time.time() - STALE_AFTER_S - 5)
        assert run.effective_state() == "lost"
        # a worker on another host cannot be checked by pid: only the heartbeat counts
        run.write_status(host="elsewhere", pid=proc.pid)
        assert run.effective_state() == "lost"
        run.write_status(heartbeat=time.time())
        assert run.effective_state() == "running"
    finally:
        live.kill()
        live.wait()
    for final in ("finished", "stopped", "failed"):
        run.write_status(state=final)
        assert run.effective_state() == final


def test_checkpoints_count_only_when_complete(tmp_path):
    run = make_run(tmp_path, "a")
    for step, files in ((10, ("model.safetensors", "state.json")), (20, ("model.safetensors",))):
        d = run.checkpoint_dir_for(step)
        d.mkdir(parents=True)
        for f in files:
            (d / f).write_text("x")
    torn = run.checkpoints_dir / ".tmp-step_00000030"
    torn.mkdir()
    (torn / "model.safetensors").write_text("x")
    assert [c.step for c in run.checkpoints()] == [10]
    assert run.latest_checkpoint().step == 10


def test_request_stop_reports_a_pending_stop(tmp_path):
    run = make_run(tmp_path, "a")
    assert run.request_stop() is False
    assert run.request_stop() is True
    run.clear_stop()
    assert not run.stop_requested()
    assert not os.path.exists(run.stop_path)


def test_write_new_never_replaces_and_takes_the_next_free_stem(tmp_path):
    folder = tmp_path / "results"
    first = write_new(folder, "step_00000010", {"csv": "a\n", "json": b'{"n": 1}\n'}, sep="_")
    assert [p.name for p in first] == ["step_00000010.csv", "step_00000010.json"]
    # a stem is taken by a file of any suffix: a lone json is enough to move on
    (folder / "step_00000010_2.json").write_text("{}")
    second = write_new(folder, "step_00000010", {"csv": "b\n", "json": "{}\n"}, sep="_")
    assert [p.name for p in second] == ["step_00000010_3.csv", "step_00000010_3.json"]
    assert (folder / "step_00000010.csv").read_text() == "a\n" and (folder / "step_00000010_2.json").read_text() == "{}"
    named = write_new(folder, "t", lambda stem: {"json": f'{{"name": "{stem}"}}'})
    named2 = write_new(folder, "t", lambda stem: {"json": f'{{"name": "{stem}"}}'})
    assert json.loads(named[0].read_text()) == {"name": "t"} and json.loads(named2[0].read_text()) == {"name": "t-2"}
    umask = os.umask(0o022)
    os.umask(umask)
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~umask for p in first + second + named)


def test_create_new_refuses_an_existing_file_and_leaves_it(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text("old")
    with pytest.raises(FileExistsError):
        create_new(path, "new")
    assert path.read_text() == "old"
    assert create_new(tmp_path / "fresh.csv", "new").read_text() == "new"


def test_write_new_racing_writers_both_keep_their_results(tmp_path):
    """Writers in separate processes started together: every result lands under its own stem."""
    code = ("import sys; from recurlab.rundir import write_new; "
            "write_new(sys.argv[1], 'trace', {'json': sys.argv[2] * 1000, 'csv': sys.argv[2]})")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(i)]) for i in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0] * 4
    jsons = sorted(tmp_path.glob("*.json"))
    assert len(jsons) == 4 and sorted(p.read_text()[0] for p in jsons) == ["0", "1", "2", "3"]
    assert all(p.with_suffix(".csv").read_text() == p.read_text()[0] for p in jsons)


def test_unreadable_folders_are_run_errors_even_for_root(tmp_path, monkeypatch):
    """What a non-root user meets with chmod 000 (root reads through it, so the denial is simulated
    here; tests/test_cli_errors.py checks the real thing as `nobody` where it can)."""
    from pathlib import Path

    make_run(tmp_path / "runs", "open")
    make_run(tmp_path / "runs", "hidden")
    closed, hidden = tmp_path / "runs", tmp_path / "runs" / "hidden"
    real_iterdir, real_is_file, real_access = Path.iterdir, Path.is_file, os.access

    def iterdir(self):
        if self == closed and denied["runs"]:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    def is_file(self):
        if self.parent == hidden:
            raise PermissionError(13, "Permission denied", str(self))
        return real_is_file(self)

    denied = {"runs": True}
    monkeypatch.setattr(Path, "iterdir", iterdir)
    monkeypatch.setattr(Path, "is_file", is_file)
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != hidden and real_access(p, mode))
    with pytest.raises(RunError, match="cannot read runs directory .* .permission denied."):
        list_runs(closed)
    denied["runs"] = False
    assert [r.name for r in list_runs(closed)] == ["open"]  # a run folder it cannot look into is left out
    for spec, root in (("hidden", closed), (str(hidden), tmp_path)):
        with pytest.raises(RunError, match="cannot read run directory .*hidden.* .permission denied."):
            resolve_run(spec, root)
