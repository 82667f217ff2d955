"""The CLI against an existing finished run: read-only commands, and every bad input.

Bad input must exit 2 with one line on stderr, no traceback, and leave every existing run
byte-identical (and create no new one).
"""

import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import run_cli
from recurlab.rundir import RunDir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def existing(tmp_path_factory):
    """A finished `tiny` run trained with --foreground (no worker process outlives it)."""
    home = tmp_path_factory.mktemp("cli")
    runs = home / "runs"
    res = run_cli("train", "--profile", "tiny", "--runs-dir", runs, "--name", "existing", "--foreground",
                  "train.max_steps=10", "train.checkpoint_every=5", cwd=home, timeout=300, check=True)
    assert "existing: finished at step 10" in res.stderr
    bad = home / "broken.yaml"
    bad.write_text("model:\n  n_embd: [32\ntrain: {\n")
    (home / "empty-folder").mkdir()
    (home / "empty.txt").write_text(" \n\n")
    return home, runs, bad


def snapshot(root):
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def test_foreground_run_is_complete(existing):
    _, runs, _ = existing
    run = RunDir(runs / "existing")
    st = run.read_status()
    assert st["state"] == "finished" and st["step"] == 10
    assert [c.step for c in run.checkpoints()] == [5, 10]
    assert [r["step"] for r in run.read_metrics("train")] == list(range(1, 11))
    assert yaml.safe_load(run.config_path.read_text())["train"]["max_steps"] == 10


def test_read_only_commands(existing):
    home, runs, _ = existing
    before = snapshot(runs)
    table = run_cli("runs", "--runs-dir", runs, cwd=home, check=True).stdout.splitlines()
    assert table[0].split() == ["NAME", "STATE", "STEP", "LOSS", "TOK/S", "AGE"]
    assert table[1].split()[:3] == ["existing", "finished", "10/10"]
    out = run_cli("status", "exi", "--runs-dir", runs, cwd=home, check=True).stdout
    assert "effective state: finished" in out and "checkpoints: step_00000005, step_00000010" in out
    assert "worker.log" not in out  # the log tail is only shown for dead runs
    log = run_cli("logs", str(runs / "existing"), cwd=home, check=True).stdout  # a run given by path
    assert log == (runs / "existing" / "worker.log").read_text()
    assert snapshot(runs) == before

    listing = run_cli("profiles", cwd=home, check=True).stdout
    for name in ("tiny", "cpu", "rtx4090", "h100"):
        assert any(line.split()[0] == name and len(line.split()) > 3 for line in listing.splitlines())
    shown = yaml.safe_load(run_cli("profiles", "show", "tiny", "k=1", "train.r_mean=3", cwd=home, check=True).stdout)
    assert shown["profile"] == "tiny" and shown["train"]["k"] == 1 and shown["train"]["r_mean"] == 3


BAD_INPUTS = [
    (["train", "--profile", "nope"], "unknown profile 'nope'"),
    (["train", "--profile", "tiny", "bogus=1"], "bogus"),
    (["train", "--profile", "tiny", "train.max_steps=abc"], "train.max_steps"),
    (["train", "--profile", "tiny", "r_mean=0"], "train.r_mean"),
    (["train", "--profile", "tiny", "k=9"], "train.k"),
    (["train", "--profile", "tiny", "batch_size=16", "micro_batch=5"], "train.micro_batch"),
    (["train", "--profile", "tiny", "r_mean"], "key=value"),
    (["train", "--profile", "tiny", "--name", "existing"], "already exists"),
    (["train", "--profile", "tiny", "--name", "../escape"], "--name"),
    (["train", "--profile", "{bad}"], "not valid YAML"),
    (["train", "--profile", "tiny", "--runs-dir", "{bad}"], "is a file, not a directory"),
    (["status", "missing"], "no run 'missing'"),
    (["logs", "missing", "-f"], "no run 'missing'"),
    (["stop", "missing"], "no run 'missing'"),
    (["resume", "missing"], "no run 'missing'"),
    (["stop", "existing"], "not running"),
    (["resume", "existing"], "already finished"),
    (["profiles", "show", "nope"], "unknown profile"),
    # checked before the run directory exists: the data source and the device
    (["train", "--profile", "tiny", "data.source=local", "data.name=/nonexistent"], "no such file or folder"),
    (["train", "--profile", "tiny", "data.source=local", "data.name=empty-folder"], "no readable text files"),
    (["train", "--profile", "tiny", "data.source=local", "data.name=empty.txt", "--foreground"], "every file is empty"),
    (["train", "--profile", "tiny", "hardware.device=cuda", "--foreground"], "CUDA is not available"),
    (["train", "--profile", "tiny", "--device", "cuda:0"], "CUDA is not available"),
]


@pytest.mark.parametrize("args, expected", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(existing, args, expected):
    home, runs, bad = existing
    if "CUDA is not available" in expected:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    args = [str(bad) if a == "{bad}" else a for a in args]
    if args[0] != "profiles" and "--runs-dir" not in args:
        args += ["--runs-dir", str(runs)]
    before = snapshot(home)
    res = run_cli(*args, cwd=home)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], res.stderr
    assert snapshot(home) == before


def test_runs_command_does_not_import_torch(existing):
    home, runs, _ = existing
    code = (
        "import sys\n"
        f"sys.argv = ['recurlab', 'runs', '--runs-dir', {str(runs)!r}]\n"
        "from recurlab.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('torch loaded' if 'torch' in sys.modules else 'no torch')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=home, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[-1] == "no torch"
    assert "existing" in res.stdout


def test_offline_hub_profile_is_one_line_before_anything_is_written(existing, monkeypatch):
    home, runs, _ = existing
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = snapshot(home)
    res = run_cli("train", "--profile", "rtx4090", "--foreground", "hardware.device=cpu", "--runs-dir", runs, cwd=home)
    assert res.returncode == 2 and "Traceback" not in res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: hub dataset nvidia/OpenMathInstruct-1"), res.stderr
    assert "data.source=local" in lines[0]
    assert snapshot(home) == before


def test_foreground_worker_failure_is_one_line_with_the_traceback_in_the_log(existing):
    """A failure only the worker finds (here: rows without the text field) is one line in the foreground."""
    home, runs, _ = existing
    (home / "rows.jsonl").write_text('{"body": "no text field here"}\n')
    res = run_cli("train", "--profile", "tiny", "--foreground", "--name", "no-field", "--runs-dir", runs,
                  "data.source=local", "data.name=rows.jsonl", "data.seq_len=16", "data.tokenizer_vocab=300",
                  cwd=home, timeout=300)
    assert res.returncode == 1 and "Traceback" not in res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: run no-field failed at step 0: DataError:"), res.stderr
    assert "rows have no field 'text'" in lines[0] and "worker.log" in lines[0]
    log = (runs / "no-field" / "worker.log").read_text()
    assert "Traceback (most recent call last)" in log and "rows have no field 'text'" in log
    assert RunDir(runs / "no-field").read_status()["state"] == "failed"
    shutil.rmtree(runs / "no-field")  # the module's other tests compare the runs directory


def test_resume_refuses_a_finished_run_whose_status_is_garbage(existing, tmp_path):
    """The checkpoint's state.json knows the run reached max_steps, whatever status.json says."""
    home, runs, _ = existing
    copy = tmp_path / "runs"
    shutil.copytree(runs / "existing", copy / "existing")
    (copy / "existing" / "status.json").write_text("garbage{{")
    before = snapshot(copy)
    res = run_cli("resume", "existing", "--runs-dir", copy, cwd=home)
    assert res.returncode == 2 and "Traceback" not in res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "already finished" in lines[0] and "reached train.max_steps=10" in lines[0], res.stderr
    assert snapshot(copy) == before
