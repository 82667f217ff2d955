"""End to end: the real CLI and real detached workers on the `tiny` profile.

Train detached, watch, stop gracefully, resume, finish; survive a kill -9; run two at once.
Every worker is ended by pid in the `runs_dir` fixture's teardown.

Each run is started with far more steps than it can train before the test acts, whatever the
machine's speed or load, so every condition the test waits for is reachable; the test ends the
run itself (stop, kill), then shortens run.yaml's max_steps before the resume that must finish,
as a user may between a stop and a resume.
"""

import os
import re
import signal
import subprocess
import time

import pytest

from conftest import cli_command
from recurlab.checkpoint import run_config
from recurlab.rundir import RunDir, pid_alive

pytestmark = pytest.mark.slow

# A hang guard for a loaded machine, not a speed requirement.
PATIENCE_S = 180.0


def wait_for(predicate, what: str):
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def train_steps(run: RunDir) -> list[int]:
    return [r["step"] for r in run.read_metrics("train")]


def last_step(run: RunDir) -> int:
    steps = train_steps(run)
    return steps[-1] if steps else 0


def set_max_steps(run: RunDir, steps: int) -> None:
    """Shorten a stopped run so that its resume finishes."""
    text = re.sub(r"(?m)^(\s+max_steps:) \d+$", rf"\g<1> {steps}", run.config_path.read_text())
    run.config_path.write_text(text)
    assert run_config(run).train.max_steps == steps


def one_line_error(res) -> str:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


def table_row(text: str, name: str) -> list[str]:
    rows = [line.split() for line in text.splitlines() if line.split()[:1] == [name]]
    assert len(rows) == 1, text
    return rows[0]


def test_detached_train_stop_resume_finish(cli, runs_dir):
    res = cli("train", "--profile", "tiny", "--runs-dir", runs_dir, "--name", "life", "train.max_steps=100000", check=True)
    assert res.stdout.strip() == "life"
    assert "recurlab logs life -f" in res.stderr
    run = RunDir(runs_dir / "life")
    pid = run.read_status()["pid"]
    assert pid_alive(pid)
    assert os.getsid(pid) == pid  # detached: its own session, so it outlives the terminal

    wait_for(lambda: last_step(run) >= 10, "training to start")
    assert run.read_status()["state"] == "running"
    row = table_row(cli("runs", "--runs-dir", runs_dir, check=True).stdout, "life")
    assert row[1] == "running" and row[2].endswith("/100000")

    # resume of a running run is refused and changes nothing
    msg = one_line_error(cli("resume", "life", "--runs-dir", runs_dir))
    assert "stop it first" in msg
    assert run.read_status()["pid"] == pid

    res = cli("stop", "li", "--runs-dir", runs_dir, check=True)  # by unique prefix
    st = run.read_status()
    assert st["state"] == "stopped", (st, res.stdout, res.stderr)
    stopped_at = st["step"]
    assert 10 <= stopped_at < 100000
    assert f"stopped at step {stopped_at}" in res.stdout
    assert run.latest_checkpoint().step == stopped_at
    assert st["last_checkpoint"] == f"step_{stopped_at:08d}"
    assert not run.stop_requested()
    wait_for(lambda: not pid_alive(pid), "the stopped worker to exit")
    assert train_steps(run) == list(range(1, stopped_at + 1))

    last = stopped_at + 30
    set_max_steps(run, last)
    res = cli("resume", "life", "--runs-dir", runs_dir, check=True)
    assert f"resuming from step_{stopped_at:08d}" in res.stderr
    assert run.read_status()["pid"] != pid
    res = cli("logs", "life", "-f", "--runs-dir", runs_dir, timeout=PATIENCE_S, check=True)
    assert f"finished at step {last}" in res.stdout
    assert run.read_status()["state"] == "finished"

    # no duplicated and no missing steps across the stop and the resume
    assert train_steps(run) == list(range(1, last + 1))
    evals = [(r["step"], r.get("r")) for r in run.read_metrics("eval")]
    assert len(evals) == len(set(evals)) and evals
    out = cli("status", "life", "--runs-dir", runs_dir, check=True).stdout
    assert "effective state: finished" in out and f"step_{last:08d}" in out


def test_kill_9_is_detected_and_resume_continues_from_the_last_complete_checkpoint(cli, runs_dir):
    cli("train", "--profile", "tiny", "--runs-dir", runs_dir, "--name", "crash", "train.max_steps=100000",
        "train.checkpoint_every=10", check=True)
    run = RunDir(runs_dir / "crash")
    pid = run.read_status()["pid"]
    wait_for(lambda: run.latest_checkpoint() is not None and last_step(run) >= run.latest_checkpoint().step + 3,
             "a checkpoint and a few steps past it")
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), "the killed worker to go")
    killed_at = time.time()
    ckpt = run.latest_checkpoint().step
    assert last_step(run) > ckpt
    assert run.read_status()["state"] == "running"  # the worker had no chance to say otherwise
    # a checkpoint that was being written when the worker died does not count (the kill may have
    # caught the worker writing this very one: then it is already there, torn for real)
    torn = run.checkpoints_dir / f".tmp-step_{ckpt + 10:08d}"
    torn.mkdir(exist_ok=True)
    (torn / "model.safetensors").write_bytes(b"\0" * 16)

    out = cli("status", "crash", "--runs-dir", runs_dir, check=True).stdout
    assert "effective state: failed" in out and "status.json says running" in out
    assert "worker.log" in out and f"worker pid {pid}" in out  # the log tail of a dead run
    assert table_row(cli("runs", "--runs-dir", runs_dir, check=True).stdout, "crash")[1] == "failed"

    last = ckpt + 25
    set_max_steps(run, last)
    res = cli("resume", "crash", "--runs-dir", runs_dir, check=True)
    assert f"resuming from step_{ckpt:08d}" in res.stderr
    cli("logs", "crash", "-f", "--runs-dir", runs_dir, timeout=PATIENCE_S, check=True)
    assert run.read_status()["state"] == "finished"
    assert not torn.exists()  # the resumed worker cleaned the torn temporary
    rows = run.read_metrics("train")
    assert [r["step"] for r in rows] == list(range(1, last + 1))
    # rows up to the checkpoint are the first worker's; everything after it was trained again
    assert all(r["time"] < killed_at for r in rows if r["step"] <= ckpt)
    assert all(r["time"] > killed_at for r in rows if r["step"] > ckpt)


def test_stop_now_before_any_checkpoint_then_resume_from_the_start_without_repeating_steps(cli, runs_dir):
    cli("train", "--profile", "tiny", "--runs-dir", runs_dir, "--name", "early", "train.max_steps=100000",
        "train.checkpoint_every=100000", check=True)
    run = RunDir(runs_dir / "early")
    pid = run.read_status()["pid"]
    wait_for(lambda: last_step(run) >= 5, "a few logged steps")
    res = cli("stop", "early", "--now", "--runs-dir", runs_dir, check=True)
    assert f"killed (pid {pid}); last checkpoint: none" in res.stdout
    assert not pid_alive(pid)
    st = run.read_status()
    assert st["state"] == "stopped" and "killed by `recurlab stop --now`" in st["error"]
    assert run.latest_checkpoint() is None
    set_max_steps(run, 40)
    res = cli("resume", "early", "--runs-dir", runs_dir, check=True)
    assert "from the start" in res.stderr
    cli("logs", "early", "-f", "--runs-dir", runs_dir, timeout=PATIENCE_S, check=True)
    assert run.read_status()["state"] == "finished"
    assert train_steps(run) == list(range(1, 41))


def test_two_runs_train_at_once_without_touching_each_other(cli, runs_dir):
    for name, seed in (("one", 1), ("two", 2)):
        cli("train", "--profile", "tiny", "--runs-dir", runs_dir, "--name", name, "train.max_steps=100000",
            f"train.seed={seed}", check=True)
    one, two = RunDir(runs_dir / "one"), RunDir(runs_dir / "two")
    pids = {r.name: r.read_status()["pid"] for r in (one, two)}
    assert pids["one"] != pids["two"]
    wait_for(lambda: last_step(one) >= 5 and last_step(two) >= 5, "both runs to train")
    marks = last_step(one), last_step(two)
    wait_for(lambda: last_step(one) > marks[0] + 5 and last_step(two) > marks[1] + 5, "both runs to keep training")
    assert all(pid_alive(p) for p in pids.values())
    rows = cli("runs", "--runs-dir", runs_dir, check=True).stdout
    assert table_row(rows, "one")[1] == "running" and table_row(rows, "two")[1] == "running"

    cli("stop", "one", "--runs-dir", runs_dir, check=True)
    assert one.read_status()["state"] == "stopped"
    assert pid_alive(pids["two"]) and two.effective_state() == "running"

    # a worker that does not answer a stop (here: paused) is killed by a second stop
    os.kill(pids["two"], signal.SIGSTOP)
    first = subprocess.Popen(cli_command() + ["stop", "two", "--runs-dir", str(runs_dir)],
                             cwd=runs_dir.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(two.stop_requested, "the first stop to be requested")
        res = cli("stop", "two", "--runs-dir", runs_dir, check=True)
        assert "killed" in res.stdout
        out, _ = first.communicate(timeout=PATIENCE_S)
        assert first.returncode == 0 and "two: stopped" in out  # the waiting first stop sees the outcome
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    st = two.read_status()
    assert st["state"] == "stopped" and "killed by a second `recurlab stop`" in st["error"]
    assert not pid_alive(pids["two"]) and not two.stop_requested()

    for run, seed in ((one, 1), (two, 2)):
        st = run.read_status()
        assert st["name"] == run.name
        assert f"seed: {seed}" in run.config_path.read_text()
        log = run.log_path.read_text()
        other = "two" if run.name == "one" else "one"
        assert f"run {run.name} " in log and f"run {other} " not in log
        assert str(pids[other]) not in log
        steps = train_steps(run)
        assert steps == list(range(1, len(steps) + 1))
        assert {p.name for p in run.path.iterdir()} <= {
            "run.yaml", "status.json", "metrics.jsonl", "worker.log", "checkpoints", "vocab.json", "environment.json"}
    assert one.latest_checkpoint().step == one.read_status()["step"]
