"""`recurlab inspect`'s lenses, interventions and stability summary, `recurlab lens train` and the
figures of `recurlab plot lens / causal-trace / stability`, on a run directory built by hand."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import recurlab.cli.infer  # noqa: F401  (registers the commands)
import recurlab.cli.lens  # noqa: F401
import recurlab.cli.plot  # noqa: F401
from recurlab.checkpoint import model_tensors, save_checkpoint
from recurlab.cli.app import app
from recurlab.config import RunConfig, to_yaml, validate
from recurlab.engine import Engine
from recurlab.engine.interventions import patch, prepare, with_prompt
from recurlab.rundir import RunDir
from test_engine_utils import tiny_config, trained_model

PROMPT, OTHER = "12+34=", "57+21="


@pytest.fixture
def run_dir(tmp_path):
    model, tok = trained_model()
    cfg = RunConfig(profile="test", model=tiny_config())
    cfg.data.difficulties = [1, 2]
    cfg.data.eval_examples = 8
    validate(cfg)
    run = RunDir.create(tmp_path / "runs", "add-test", to_yaml(cfg))
    run.vocab_path.write_text(tok.to_json())
    save_checkpoint(run, 100, model_tensors(model), None, {"tokens": 0})
    return run


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(res) -> str:
    assert res.exit_code == 2, (res.exit_code, res.output)
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    return lines[0]


def test_bad_intervention_options_are_one_line_and_write_nothing(run_dir):
    p = run_dir.path
    cases = [
        (["--noise", "0.5"], "SIGMA@ITER"),
        (["--patch-from", OTHER], "go together"),
        (["--noise", "0.5@2", "--inject-off", "2"], "one intervention"),
        (["--causal-trace"], "--corrupt"),
        (["--patch-from", OTHER, "--at", "40,2"], "outside 0.."),
        (["--patch-from", OTHER, "--at", "3,9"], "outside 1..4"),
        (["--causal-trace", "--corrupt", "1+2="], "as long"),
        (["--lens", "tuned"], "lens train"),
        (["--lens", "sideways"], "unknown lens"),
    ]
    for extra, needle in cases:
        line = one_line_error(invoke("inspect", p, "-p", PROMPT, "--r", "4", *extra))
        assert needle in line, (extra, line)
    assert "--prompt" in one_line_error(invoke("inspect", p))
    assert "--place" in one_line_error(invoke("lens", "train", p, "--place", "middle"))
    assert not (p / "interventions").exists() and not (p / "traces").exists() and not (p / "lenses").exists()


def test_a_patch_from_the_cli_is_saved_beside_the_traces_and_never_overwritten(run_dir):
    p = run_dir.path
    args = ("inspect", p, "-p", PROMPT, "--generate", "2", "--r", "4", "--patch-from", OTHER, "--at", "5,2", "--name", "pt")
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    first = (p / "interventions" / "pt.json").read_text()
    rec = json.loads(first)
    # the same numbers as the engine's patch called directly
    model, tok = trained_model()
    engine = Engine(model, tok)
    seq = prepare(engine, PROMPT, 2, 4)
    direct = patch(model, tok, seq, with_prompt(engine, OTHER, seq), 5, 2, 4, with_trace=False)
    assert rec["type"] == "patch" and rec["delta"] == pytest.approx(direct["delta"], abs=1e-6)
    assert f"{rec['delta']:+.4f}" in res.output and "written to" in res.output
    assert invoke(*args).exit_code == 0
    assert (p / "interventions" / "pt-2.json").exists() and (p / "interventions" / "pt.json").read_text() == first


def test_causal_trace_noise_and_injection_from_the_cli(run_dir, tmp_path):
    p = run_dir.path
    res = invoke("inspect", p, "-p", PROMPT, "--generate", "2", "--r", "3", "--causal-trace", "--corrupt", OTHER, "--name", "ct")
    assert res.exit_code == 0, res.output
    rec = json.loads((p / "interventions" / "ct.json").read_text())
    assert rec["type"] == "causal_trace" and len(rec["recovery"]) == len(rec["tokens"]) and len(rec["recovery"][0]) == 3
    assert "causal trace:" in res.output
    res = invoke("inspect", p, "-p", PROMPT, "--r", "4", "--noise", "0.3@2", "--name", "nz")
    assert res.exit_code == 0 and "recovered" in res.output, res.output
    assert len(json.loads((p / "interventions" / "nz.json").read_text())["recovered_at"]) == len(rec["tokens"]) - 2
    res = invoke("inspect", p, "-p", PROMPT, "--r", "4", "--inject-off", "2", "--inject-from", OTHER, "--name", "io")
    assert res.exit_code == 0 and "injection of '57+21='" in res.output, res.output
    out = tmp_path / "figs"
    res = invoke("plot", "causal-trace", p, "--out", out, "--format", "svg", "--csv")
    assert res.exit_code == 0, res.output
    assert {f.suffix for f in out.iterdir()} == {".svg", ".csv"}


def test_lens_train_then_inspect_with_it_and_plot_it(run_dir, tmp_path):
    p = run_dir.path
    res = invoke("lens", "train", p, "--r", "3", "--steps", "4", "--batch-size", "8", "--name", "ln")
    assert res.exit_code == 0, res.output
    rec = json.loads((p / "lenses" / "ln.json").read_text())
    assert (p / "lenses" / "ln.safetensors").exists() and set(rec["kl"]) == {"coda", "logit", "tuned"}
    assert len(rec["kl"]["tuned"]) == 3 and f"{rec['kl']['logit'][0]:.4g}" in res.output
    assert invoke("lens", "train", p, "--r", "3", "--steps", "2", "--name", "ln").exit_code == 0
    assert (p / "lenses" / "ln-2.json").exists()
    res = invoke("inspect", p, "-p", PROMPT, "--r", "4", "--lens", "tuned", "--radius", "--name", "tr")
    assert res.exit_code == 0, res.output
    trace = json.loads((p / "traces" / "tr.json").read_text())
    assert trace["lens"].startswith("tuned (ln-2") and all(t["radius"] is not None for t in trace["tokens"])
    assert "ρ=" in res.output
    out = tmp_path / "figs"
    assert invoke("plot", "lens", p, "--out", out, "--format", "svg", "--trace", "ln").exit_code == 0
    assert [f.name for f in out.iterdir()] == ["lens-kl-ln.svg"]


def test_stability_summary_from_the_cli(run_dir, tmp_path):
    p = run_dir.path
    res = invoke("inspect", p, "--stability", "--levels", "1-2", "--per-level", "2", "--r", "3", "--name", "st")
    assert res.exit_code == 0, res.output
    rec = json.loads((p / "stability" / "st.json").read_text())
    assert [g["level"] for g in rec["groups"]] == [1, 2]
    for g in rec["groups"]:
        assert g["prompts"] == 2 and 0 <= g["accuracy"] <= 1
        assert g["settling"] + g["orbiting"] + g["drifting"] == pytest.approx(1.0)
        assert g["radius_median"] <= g["radius_p90"]
    assert "settling" in res.output
    assert "--levels" in one_line_error(invoke("inspect", p, "--stability", "--levels", "x"))
    out = tmp_path / "figs"
    assert invoke("plot", "stability", p, "--out", out, "--format", "svg").exit_code == 0
