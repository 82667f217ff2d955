"""More bad input from the real CLI: duplicate profile keys, --r values, paths that are not what
they should be. Each gives one `error:` line, exit 2, and writes nothing."""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import run_cli
from recurlab.rundir import RunDir


def snapshot(root):
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def one_line_error(res) -> str:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stdout + res.stderr and "Usage" not in res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A run with one checkpoint of a random tiny model (no training needed to test parsing)."""
    import torch

    from recurlab.checkpoint import model_tensors, save_checkpoint
    from recurlab.config import load_profile, to_yaml
    from recurlab.model import RecurrentLM
    from recurlab.tasks import CharVocab

    root = tmp_path_factory.mktemp("errs")
    cfg = load_profile("tiny")
    run = RunDir.create(root / "runs", "saved", to_yaml(cfg))
    run.vocab_path.write_text(CharVocab.default().to_json())
    torch.manual_seed(0)
    save_checkpoint(run, 1, model_tensors(RecurrentLM(cfg.model)), None, {"tokens": 0})
    return root


@pytest.mark.parametrize("yaml_text,line,key", [
    ("description: d\nmodel:\n  n_embd: 32\n  n_head: 2\n  n_embd: 64\n", 5, "n_embd"),
    ("description: d\nmodel:\n  n_embd: 32\ntrain:\n  lr: 0.01\nmodel:\n  n_head: 2\n", 6, "model"),
])
def test_a_profile_with_a_duplicate_key_is_refused_naming_key_and_line(cli, tmp_path, yaml_text, line, key):
    profile = tmp_path / "dup.yaml"
    profile.write_text(yaml_text)
    for args in (("train", "--profile", profile, "--runs-dir", tmp_path / "runs"), ("profiles", "show", profile)):
        msg = one_line_error(cli(*args))
        assert f"line {line}: key '{key}' is given twice" in msg, msg
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("value", ["", "abc", "1,,2", "0"])
@pytest.mark.parametrize("command", ["generate", "inspect", "sweep"])
def test_bad_r_values_give_one_line_on_every_command(cli, saved_run, command, value):
    runs = saved_run / "runs"
    before = snapshot(saved_run)
    args = [command, "saved", "--runs-dir", runs, f"--r={value}"]
    if command != "sweep":
        args += ["--prompt", "12+34="]
    msg = one_line_error(cli(*args))
    assert "--r" in msg and repr(value) in msg, msg
    assert snapshot(saved_run) == before


def test_tui_names_what_is_wrong_with_a_path(cli, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    before = snapshot(tmp_path)
    assert "'/nonexistent/runs' does not exist" in one_line_error(cli("tui", "/nonexistent/runs"))
    assert f"'{afile}' is a file" in one_line_error(cli("tui", afile))
    for command in (("tui",), ("runs",), ("status", "x"), ("train", "--profile", "tiny")):
        msg = one_line_error(cli(*command, "--runs-dir", afile))
        assert f"--runs-dir '{afile}' is a file, not a directory" in msg, (command, msg)
    assert snapshot(tmp_path) == before


# ---- the catalogue of bad inputs -------------------------------------------------------------
#
# One row per case: (id, argv, setup, the substring the one error line must hold). Each row runs
# the real CLI in a fresh copy of `lab` (two runs and a few files, no training), after `setup`
# changed that copy, and asserts: exit code 2, exactly one stderr line, starting with `error:`,
# no traceback, and every file and folder of the copy unchanged (contents, mode and mtime).

HOST = socket.gethostname()
LONG_PROMPT = "1+2=" * 20  # 81 tokens with <bos>: past the tiny profile's block_size of 32


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """runs/saved: stopped at step 2 (checkpoints 1 and 2); runs/done: finished (max_steps 2);
    runs/empty: stopped with no checkpoint. Random tiny weights: parsing and checks need no training."""
    import torch

    from recurlab.checkpoint import model_tensors, save_checkpoint
    from recurlab.config import load_profile, to_yaml
    from recurlab.model import RecurrentLM
    from recurlab.tasks import CharVocab

    home = tmp_path_factory.mktemp("lab")
    torch.manual_seed(0)
    for name, max_steps, steps, state in (("saved", 100, (1, 2), "stopped"), ("done", 2, (2,), "finished"),
                                          ("empty", 100, (), "stopped")):
        cfg = load_profile("tiny", [f"train.max_steps={max_steps}"])
        run = RunDir.create(home / "runs", name, to_yaml(cfg))
        run.vocab_path.write_text(CharVocab.default().to_json())
        model = RecurrentLM(cfg.model)
        for step in steps:
            save_checkpoint(run, step, model_tensors(model), None, {"tokens": 64 * step})
        run.write_status(state=state, step=steps[-1] if steps else 0, max_steps=max_steps, heartbeat=time.time())
    (home / "nonutf.yaml").write_bytes(b"description: caf\xe9\nmodel:\n  n_embd: 32\n")
    (home / "nan.yaml").write_text("description: d\ntrain:\n  weight_decay: .nan\n")
    (home / "afile").write_text("x")
    (home / "folder.yaml").mkdir()
    (home / "untyped").mkdir()
    (home / "untyped" / "config.json").write_text('{"architectures": [1, 2]}')
    (home / "notjson").mkdir()
    (home / "notjson" / "config.json").write_text("{not json")
    (home / "nomodel").mkdir()
    return home


def _status(text):
    return lambda home: (home / "runs" / "saved" / "status.json").write_text(text)


def _folder_for(name):
    def setup(home):
        path = home / "runs" / "saved" / name
        path.unlink(missing_ok=True)
        path.mkdir()
    return setup


def _latest_checkpoint(change):
    return lambda home: change(home / "runs" / "saved" / "checkpoints" / "step_00000002")


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _binary_profile(home):
    (home / "profiles").mkdir()
    (home / "profiles" / "binary.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")


TINY = ["train", "--profile", "tiny"]
CATALOGUE = [
    # tracebacks before: files that are not what they should be
    ("profile not utf-8", ["profiles", "show", "nonutf.yaml"], None, "not UTF-8 text"),
    ("train profile not utf-8", ["train", "--profile", "nonutf.yaml"], None, "not UTF-8 text"),
    ("binary file in ./profiles", ["profiles"], _binary_profile, "binary.yaml is not UTF-8 text"),
    ("profile is a folder", ["train", "--profile", "folder.yaml"], None, "Is a directory"),
    ("task yaml not utf-8", ["eval", "saved", "--tasks", "nonutf.yaml", "--r", "1"], None, "not UTF-8 text"),
    ("stop: pid a string", ["stop", "saved"], _status(f'{{"state": "running", "pid": "abc", "host": "{HOST}"}}'),
     "has no live worker here"),
    ("stop: heartbeat a string", ["stop", "saved"], _status('{"state": "running", "heartbeat": "soon"}'),
     "has no live worker here"),
    ("resume: status a list", ["resume", "done"],
     lambda home: (home / "runs" / "done" / "status.json").write_text("[1, 2]"), "reached train.max_steps=2"),
    ("stop: status a list", ["stop", "saved"], _status("[1, 2]"), "is not running (state: unknown)"),
    ("logs: worker.log a folder", ["logs", "saved"], _folder_for("worker.log"), "Is a directory"),
    ("generate: vocab.json a folder", ["generate", "saved", "--prompt", "1+2="], _folder_for("vocab.json"),
     "cannot read runs/saved/vocab.json: Is a directory"),
    ("generate: run.yaml of the wrong type", ["generate", "saved", "--prompt", "1+2="],
     lambda home: (home / "runs" / "saved" / "run.yaml").write_text("model: {n_embd: abc}\n"),
     "run saved: model.n_embd: expected an integer, got 'abc'"),
    ("plot: metrics.jsonl a folder", ["plot", "curves", "saved"],
     lambda home: (home / "runs" / "saved" / "metrics.jsonl").mkdir(), "no train loss to plot"),
    ("sweep level past int-to-string", ["sweep", "saved", "--r", "1", "--difficulties", "100000"], None,
     "level 100000 of addition needs 300004 tokens"),
    ("exit argmax:inf", ["generate", "saved", "--prompt", "1+2=", "--exit", "argmax:inf"], None,
     "exit threshold must be >= 0 and finite"),
    ("freeze stable:inf", ["generate", "saved", "--prompt", "1+2=", "--sampler", "parallel:freeze=stable:inf"], None,
     "freeze threshold must be >= 0 and finite"),
    ("config.json architectures ints", ["generate", "--model", "untyped", "--prompt", "x"], None,
     "holds a model with no model_type (1,2)"),
    ("export under a file", ["export", "saved", "afile/out"], None, "'afile' is a file, not a folder"),
    # nonsense that was accepted
    ("profile weight_decay .nan", ["train", "--profile", "nan.yaml"], None, "weight_decay: expected a finite number"),
    ("beta1 5", [*TINY, "train.beta1=5"], None, "train.beta1 and train.beta2 must be in [0, 1)"),
    ("beta1 2 detached", [*TINY, "beta1=2"], None, "train.beta1 and train.beta2 must be in [0, 1)"),
    ("lr inf", [*TINY, "train.lr=inf"], None, "train.lr: expected a finite number"),
    ("weight_decay nan", [*TINY, "weight_decay=nan", "--foreground"], None, "expected a finite number"),
    ("negative rotary base", [*TINY, "model.rope_base=-10000"], None, "model.rope_base must be > 1"),
    ("difficulties past block_size", [*TINY, "data.difficulties=20"], None,
     "level 20 of addition needs 64 tokens but the model's block_size is 32"),
    ("chain level past its letters", [*TINY, "data.task=chain", "data.difficulties=2,14", "model.block_size=256"], None,
     "the task has levels 1 to 13"),
    ("train --runs-dir ''", [*TINY, "--runs-dir", ""], None, "--runs-dir '' is empty"),
    ("runs --runs-dir ''", ["runs", "--runs-dir", ""], None, "--runs-dir '' is empty"),
    ("status --runs-dir ''", ["status", "saved", "--runs-dir", ""], None, "--runs-dir '' is empty"),
    ("runs --runs-dir missing", ["runs", "--runs-dir", "missing"], None, "runs directory 'missing' does not exist"),
    ("status ''", ["status", ""], None, "the run '' is empty"),
    ("resume: truncated checkpoint", ["resume", "saved"],
     _latest_checkpoint(lambda ck: _truncate(ck / "model.safetensors")), "model.safetensors is cut short"),
    ("resume: garbage state.json", ["resume", "saved"],
     _latest_checkpoint(lambda ck: (ck / "state.json").write_text("{garbage")), "its state.json is not a JSON object"),
    ("resume: state.json of the wrong shape", ["resume", "saved"],
     _latest_checkpoint(lambda ck: (ck / "state.json").write_text('{"step": "two"}')), "an integer step and tokens"),
    ("resume --device cuda", ["resume", "saved", "--device", "cuda"], None, "CUDA is not available"),
    ("generate prompt past context", ["generate", "saved", "--prompt", LONG_PROMPT], None,
     "the prompt is 81 tokens, longer than the model's context of 32"),
    ("inspect prompt past context", ["inspect", "saved", "--prompt", LONG_PROMPT], None,
     "longer than the model's context of 32"),
    ("inspect generating past context", ["inspect", "saved", "--prompt", "1+2=", "--generate", "40"], None,
     "would trace past the model's context of 32"),
    ("plot --smooth nan", ["plot", "curves", "saved", "--smooth", "nan"], None, "--smooth must be a finite number"),
    ("eval_r empty item", [*TINY, "train.eval_r=1,,2"], None, "train.eval_r: '1,,2' has an empty item"),
    ("a key twice on the command line", [*TINY, "r_mean=3", "train.r_mean=4"], None,
     "train.r_mean is given twice on the command line"),
    # refused only after something was written
    ("seed beyond 64 bits", [*TINY, "train.seed=18446744073709551616", "--foreground"], None, "does not fit in 64 bits"),
    ("negative seed", [*TINY, "train.seed=-1"], None, "train.seed must be in [0, 2^63)"),
    ("width beyond int64", [*TINY, "model.n_embd=9223372036854775808", "--foreground"], None, "does not fit in 64 bits"),
    ("difficulties 5000", [*TINY, "data.difficulties=5000", "--foreground"], None, "level 5000 of addition needs"),
    ("sweep --out in a missing folder", ["sweep", "saved", "done", "--r", "1", "--out", "missing/agg.csv"], None,
     "folder 'missing' does not exist"),
    ("sweep --out exists", ["sweep", "saved", "done", "--r", "1", "--out", "afile"], None, "'afile' already exists"),
    ("eval --out a file", ["eval", "saved", "--tasks", "embedded", "--r", "1", "--out", "afile"], None,
     "--out 'afile': 'afile' is a file"),
    ("eval a run without a checkpoint", ["eval", "empty", "--tasks", "embedded", "--r", "1"], None,
     "has no complete checkpoint"),
    # typer's own parse errors
    ("--nproc abc", [*TINY, "--nproc", "abc"], None, "Invalid value for '--nproc'"),
    ("--kv-budget abc", ["generate", "saved", "--prompt", "1+2=", "--kv-budget", "abc"], None,
     "Invalid value for '--kv-budget'"),
    ("eval --limit abc", ["eval", "saved", "--tasks", "embedded", "--limit", "abc"], None, "Invalid value for '--limit'"),
    ("an option the command lacks", ["runs", "--nproc", "2"], None, "No such option: --nproc"),
    ("a missing argument", ["status"], None, "Missing argument 'run'"),
    # the TUI refuses what it cannot open, before its first frame
    ("tui --model bad config.json", ["tui", "--model", "notjson"], None, "config.json is not valid JSON"),
    ("tui --model untyped config.json", ["tui", "--model", "untyped"], None, "holds a model with no model_type"),
    ("tui --model no model", ["tui", "--model", "nomodel"], None, "neither a run directory"),
    ("tui --model run without checkpoint", ["tui", "--model", "runs/empty"], None, "no complete checkpoint yet"),
    ("tui ''", ["tui", ""], None, "'' is empty"),
    ("tui --model ''", ["tui", "--model", ""], None, "--model '' is empty"),
]


def tree(root):
    """Every file and folder under root: (sha256 of the contents or None, mode, mtime)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
        out[str(p.relative_to(root))] = (digest, st.st_mode, st.st_mtime_ns)
    return out


@pytest.mark.parametrize("argv, setup, expected", [row[1:] for row in CATALOGUE], ids=[row[0] for row in CATALOGUE])
def test_bad_input_catalogue(lab, tmp_path, argv, setup, expected):
    if "CUDA is not available" in expected:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    home = tmp_path / "home"
    shutil.copytree(lab, home)
    if setup is not None:
        setup(home)
    before = tree(home)
    res = run_cli(*argv, cwd=home, timeout=300)
    msg = one_line_error(res)
    assert expected in msg, msg
    assert tree(home) == before


def test_the_catalogue_has_one_row_per_case():
    ids = [row[0] for row in CATALOGUE]
    assert len(ids) == len(set(ids)) and all(len(row) == 4 for row in CATALOGUE)


# ---- reads that tolerate a damaged file: exit 0, no traceback, nothing changed ----------------

TOLERATED = [
    ("runs: status a list", ["runs"], _status("[1, 2]"), "saved  unreadable"),  # as the Runs screen says
    ("status: status a list", ["status", "saved"], _status("[1, 2]"), "not a JSON object: the state is unknown"),
    ("status: pid a string", ["status", "saved"], _status(f'{{"state": "running", "pid": "abc", "host": "{HOST}"}}'),
     "ignored, of the wrong type: pid"),
    ("runs: created a string", ["runs"], _status('{"state": "stopped", "created": "yesterday"}'), "saved  stopped"),
    ("runs: heartbeat a string", ["runs"], _status('{"state": "running", "heartbeat": "soon"}'), "saved  lost"),
    ("status: status.json a folder", ["status", "saved"], _folder_for("status.json"), "the state is unknown"),
    ("status: worker.log a folder", ["status", "saved"], _folder_for("worker.log"), "effective state: stopped"),
]


@pytest.mark.parametrize("argv, setup, expected", [row[1:] for row in TOLERATED], ids=[row[0] for row in TOLERATED])
def test_damaged_files_are_read_around(lab, tmp_path, argv, setup, expected):
    home = tmp_path / "home"
    shutil.copytree(lab, home)
    setup(home)
    before = tree(home)
    res = run_cli(*argv, cwd=home)
    assert res.returncode == 0 and "Traceback" not in res.stdout + res.stderr, (res.stdout, res.stderr)
    assert expected in res.stdout, res.stdout
    assert tree(home) == before


# ---- folders another user cannot read -----------------------------------------------------------

def _unprivileged():
    """(preexec_fn, reason): a function that drops root to `nobody`, None when this process is
    not root (chmod already binds it), or a reason to skip (root, and no usable `nobody`)."""
    if os.geteuid() != 0:
        return None, None
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        return None, "running as root and there is no user `nobody` to drop to"

    def drop():
        os.setgroups([])
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    try:
        ok = subprocess.run([sys.executable, "-c", "import recurlab.rundir"], preexec_fn=drop, capture_output=True,
                            cwd="/", timeout=120).returncode == 0
    except OSError:  # the interpreter itself lies in a folder private to root
        ok = False
    if not ok:
        return None, "running as root, and `nobody` cannot start this interpreter or import recurlab"
    return drop, None


def test_unreadable_runs_folder_and_run_are_one_line_errors():
    drop, reason = _unprivileged()
    if reason:
        pytest.skip(reason)
    from conftest import cli_command

    home = Path(tempfile.mkdtemp(prefix="recurlab-perm-"))  # not tmp_path: its parents are private to root
    try:
        home.chmod(0o755)
        for folder in ("closed", "open", "open/hidden"):
            (home / folder).mkdir()
            (home / folder).chmod(0o755)
        for run in ("open/hidden", "open/visible"):
            RunDir.create(home / "open", Path(run).name, "profile: tiny\n")
            os.chmod(home / run, 0o755)
        (home / "closed").chmod(0)
        (home / "open" / "hidden").chmod(0)

        def cli(*args):
            return subprocess.run(cli_command() + list(args), cwd=home, capture_output=True, text=True, timeout=120,
                                  preexec_fn=drop)

        assert "cannot read runs directory 'closed' (permission denied)" in one_line_error(cli("runs", "--runs-dir", "closed"))
        assert "cannot read run directory 'open/hidden'" in one_line_error(cli("status", "hidden", "--runs-dir", "open"))
        assert "cannot read run directory 'open/hidden'" in one_line_error(cli("status", "open/hidden"))
        listing = cli("runs", "--runs-dir", "open")
        assert listing.returncode == 0 and "visible" in listing.stdout and "hidden" not in listing.stdout, listing
    finally:
        for p in (home / "closed", home / "open" / "hidden"):
            p.chmod(0o755)
        shutil.rmtree(home)
