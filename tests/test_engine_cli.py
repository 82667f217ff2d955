"""`recurlab generate`, `inspect` and `sweep` on a run directory built by hand (no training loop)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import recurlab.cli.infer  # noqa: F401  (registers the commands)
from recurlab.checkpoint import model_tensors, save_checkpoint
from recurlab.cli.app import app
from recurlab.config import RunConfig, to_yaml, validate
from recurlab.engine import Engine, GenerateOptions, open_model
from recurlab.heldout import evaluate_heldout
from recurlab.rundir import RunDir, read_json
import recurlab.cli.sweep  # noqa: F401
from test_engine_utils import encode, tiny_config, trained_model


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    model, tok = trained_model()
    cfg = RunConfig(profile="test", model=tiny_config())
    cfg.data.difficulties = [2]
    validate(cfg)
    runs = tmp_path_factory.mktemp("runs")
    run = RunDir.create(runs, "add-test", to_yaml(cfg))
    run.vocab_path.write_text(tok.to_json())
    save_checkpoint(run, 100, model_tensors(model), None, {"tokens": 0})
    return run


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(res) -> str:
    assert res.exit_code == 2, (res.exit_code, res.output)
    assert res.exception is None or isinstance(res.exception, SystemExit)
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    return lines[0]


def test_open_model_loads_the_checkpoint(run_dir):
    opened = open_model(run_dir.path, device="cpu")
    model, tok, cfg, ckpt = opened.model, opened.tokenizer, opened.cfg, opened.checkpoint
    trained, _ = trained_model()
    assert ckpt.step == 100 and cfg.model.n_embd == 64 and len(tok) == cfg.model.vocab_size
    for (name, a), b in zip(model.state_dict().items(), trained.state_dict().values()):
        assert torch.equal(a, b), name


def test_open_model_is_one_door_for_runs_and_model_folders(run_dir, tmp_path, monkeypatch):
    from recurlab.engine import open_model
    from recurlab.engine.loading import FAMILIES
    from recurlab.errors import ModelFormatError
    from recurlab.families.writers import write_random_huginn
    from recurlab.rundir import RunError

    opened = open_model(run_dir.path, device="cpu")
    assert opened.run.path == run_dir.path and opened.step == 100 and opened.kind == "run"
    assert opened.source == {"run": "add-test", "step": 100} and opened.label == "add-test @ step 100"
    assert opened.engine is opened.engine and opened.engine.device.type == "cpu"

    folder = write_random_huginn(tmp_path / "hf", seed=1, n_embd=32, n_heads=2, vocab_size=300, block_size=32,
                                 tokenizer_vocab=290)
    hf = open_model(folder, device="cpu")
    assert hf.kind == "huginn" and hf.run is None and hf.step is None and hf.source == {"model": str(folder)}
    assert hf.cfg.train.r_mean == hf.r_mean and hf.label == "hf"

    # a family added later is one more entry in FAMILIES; the same door opens it
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(ModelFormatError, match="holds a gpt2 model .GPT2LMHeadModel.; recurlab opens run directories"):
        open_model(other)
    class Gpt2:
        name = model_type = "gpt2"

        def claims(self, path):
            return True

        def open(self, path, device, dtype=None, step=None):
            return hf

    monkeypatch.setattr("recurlab.engine.loading.FAMILIES", [*FAMILIES, Gpt2()])
    assert open_model(other, device="cpu") is hf

    with pytest.raises(RunError, match="neither a run directory"):
        open_model(tmp_path)
    with pytest.raises(RunError, match="does not exist"):
        open_model(tmp_path / "missing")


def test_generate_json_matches_the_engine(run_dir):
    res = invoke("generate", run_dir.path, "--prompt", "12+34=", "--r", 4, "--init-scale", 0, "--json",
                 "--exit", "kl:1e-3", "--kv-budget", 2)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.strip().splitlines()[-1])
    model, tok = trained_model()
    want = Engine(model, tok).generate("12+34=", GenerateOptions(r=4, init_scale=0.0, exit="kl:1e-3", kv_budget=2))
    assert out["prompt_ids"] == [encode(tok, "12+34=")] and out["text"] == want.text
    assert out["generated_ids"] == want.generated_ids and out["texts"] == want.texts
    assert out["iterations"] == want.iterations and out["step"] == 100
    assert out["tokens_per_s"] > 0 and out["cache_bytes"] == want.cache_bytes


def test_generate_streams_text_and_summary(run_dir):
    res = invoke("generate", "add-test", "--runs-dir", run_dir.path.parent, "--prompt", "12+34=", "--r", 4,
                 "--init-scale", 0, "--speculative", "draft=1,lookahead=3")
    assert res.exit_code == 0, res.output
    model, tok = trained_model()
    want = Engine(model, tok).generate("12+34=", GenerateOptions(r=4, init_scale=0.0))
    assert res.output.startswith("12+34=" + want.text + "\n")
    assert "tokens/s" in res.output and "mean iterations per token 4.00" in res.output
    assert "KV cache" in res.output and "speculative acceptance" in res.output
    assert "fewer sequential core iterations" in res.output


def test_inspect_prints_table_and_writes_trace(run_dir):
    res = invoke("inspect", run_dir.path, "--prompt", "12+34=", "--r", 5, "--starts", 2, "--name", "cli-trace",
                 "--init-scale", 0)
    assert res.exit_code == 0, res.output
    path = run_dir.traces_dir / "cli-trace.json"
    assert f"trace written to {path}" in res.output
    trace = read_json(path)
    n = len(encode(trained_model()[1], "12+34="))
    assert trace["version"] == 1 and trace["r"] == 5 and len(trace["tokens"]) == n
    lines = res.output.splitlines()
    assert lines[0].split()[:5] == ["1", "2", "3", "4", "5"]
    assert sum(1 for line in lines if line.startswith("'")) == n  # one row per token
    assert "path independence (2 starts)" in res.output
    first = path.read_bytes()
    again = invoke("inspect", run_dir.path, "--prompt", "12+3=", "--r", 2, "--name", "cli-trace", "--init-scale", 0)
    assert again.exit_code == 0, again.output
    assert f"trace written to {run_dir.traces_dir / 'cli-trace-2.json'}" in again.output
    assert path.read_bytes() == first and read_json(run_dir.traces_dir / "cli-trace-2.json")["r"] == 2


@pytest.mark.parametrize(
    "args, match",
    [
        (["--r", "0"], "r must be"),
        (["--exit", "bogus:1"], "unknown exit criterion"),
        (["--exit", "kl:-1"], "must be >= 0"),
        (["--top-p", "2"], "top_p"),
        (["--speculative", "draft=9"], "below r"),
        (["--step", "7"], "no checkpoint at step 7"),
    ],
)
def test_generate_bad_arguments_exit_2(run_dir, args, match):
    line = one_line_error(invoke("generate", run_dir.path, "--prompt", "1+2=", "--r", 4, *args))
    assert match in line


def test_bad_prompts_and_runs_exit_2(run_dir, tmp_path):
    assert "prompt is empty" in one_line_error(invoke("generate", run_dir.path, "--prompt", ""))
    assert "not in this model's vocabulary" in one_line_error(invoke("generate", run_dir.path, "--prompt", "1+B="))
    assert "unknown exit criterion" in one_line_error(invoke("inspect", run_dir.path, "--prompt", "1+2=", "--exit", "x:1"))
    assert "no run" in one_line_error(invoke("generate", "nope", "--runs-dir", tmp_path, "--prompt", "1"))


def test_real_process_prints_one_line_without_traceback(run_dir, cli):
    res = cli("generate", run_dir.path, "--prompt", "12+34=", "--exit", "nonsense:3")
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stdout + res.stderr
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]
    assert "unknown exit criterion 'nonsense'" in res.stderr


def test_sweep_at_other_levels_keeps_the_standard_sweep(run_dir):
    from recurlab.checkpoint import load_model
    from recurlab.config import run_config
    from recurlab.data import TaskData

    res = invoke("sweep", run_dir.path, "--r", "1,3")
    assert res.exit_code == 0, res.output
    standard = run_dir.sweeps_dir / "step_00000100.csv"
    before = standard.read_bytes()
    assert before.splitlines()[0] == b"r,loss,tokens_per_s,acc@2"

    res = invoke("sweep", run_dir.path, "--r", "1,3", "--difficulties", "3,1")
    assert res.exit_code == 0, res.output
    assert standard.read_bytes() == before
    levels = run_dir.sweeps_dir / "step_00000100_levels_1-3.csv"
    assert levels.read_text().splitlines()[0] == "r,loss,tokens_per_s,acc@1,acc@3"
    saved = read_json(levels.with_suffix(".json"))
    assert saved["difficulties"] == [1, 3] and [row["r"] for row in saved["rows"]] == [1, 3]

    cfg = run_config(run_dir)
    cfg.data.difficulties = [1, 3]
    model, _ = load_model(run_dir)
    expected = evaluate_heldout(model, TaskData(cfg), [1, 3], "cpu")
    for got, want in zip(saved["rows"], expected):
        assert (got["acc@1"], got["acc@3"]) == (want["acc@1"], want["acc@3"])
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
    assert f"{100 * saved['rows'][1]['acc@3']:.1f}%" in res.output
    # level 1 of addition has 100 prompts, 10 of them held out: the report says so
    assert saved["heldout_prompts"] == {"1": 10, "3": 256}
    assert "distinct held-out prompts per level: 1: 10 (few: its accuracy says little), 3: 256" in res.output

    # the same sweep again gets a new file; neither earlier one changes
    res = invoke("sweep", run_dir.path, "--r", "1")
    assert res.exit_code == 0, res.output
    assert standard.read_bytes() == before
    assert read_json(run_dir.sweeps_dir / "step_00000100_2.json")["rs"] == [1]


def test_sweep_bad_levels_exit_2_and_write_nothing(run_dir):
    before = sorted(p.name for p in run_dir.sweeps_dir.glob("*")) if run_dir.sweeps_dir.exists() else []
    assert ">= 1" in one_line_error(invoke("sweep", run_dir.path, "--r", "1", "--difficulties", "0"))
    assert "integers" in one_line_error(invoke("sweep", run_dir.path, "--r", "1", "--difficulties", "a"))
    assert "block_size is 64" in one_line_error(invoke("sweep", run_dir.path, "--r", "1", "--difficulties", "40"))
    after = sorted(p.name for p in run_dir.sweeps_dir.glob("*")) if run_dir.sweeps_dir.exists() else []
    assert after == before
