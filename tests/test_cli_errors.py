"""More bad input from the real CLI: duplicate profile keys, --r values, paths that are not what
they should be. Each gives one `error:` line, exit 2, and writes nothing."""

from __future__ import annotations

import pytest

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
