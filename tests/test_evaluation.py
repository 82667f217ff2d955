"""The lm-eval backend, `recurlab eval` and its saved results, against independent computations.

Models: the engine tests' tiny addition model (trained ~100 steps in-process) in a run directory
built by hand; tasks: JSON lines files written here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance  # noqa: E402

import recurlab.cli.evaluate  # noqa: E402,F401  (registers the command)
import recurlab.cli.sweep  # noqa: E402,F401  (a second command, so that typer keeps command names)
from recurlab.checkpoint import model_tensors, save_checkpoint  # noqa: E402
from recurlab.cli.app import app  # noqa: E402
from recurlab.config import RunConfig, TrainConfig, to_yaml, validate  # noqa: E402
from recurlab.data import TaskData  # noqa: E402
from recurlab.engine import Engine, GenerateOptions, OpenedModel  # noqa: E402
from recurlab.evaluation.lm import RecurlabLM  # noqa: E402
from recurlab.evaluation.results import load_evals  # noqa: E402
from recurlab.evaluation.runner import EvalSettings, run_eval  # noqa: E402
from recurlab.rundir import RunDir  # noqa: E402
from test_engine_utils import random_model, tiny_config, trained_model  # noqa: E402

PROMPTS = ["12+34=", "7+8=", "45+45=", "1+99=", "60+3=", "5+5="]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    model, tok = trained_model()
    cfg = RunConfig(profile="test", model=tiny_config())
    cfg.data.difficulties = [1, 2]
    cfg.data.eval_examples = 24
    validate(cfg)
    run = RunDir.create(tmp_path_factory.mktemp("runs"), "add-eval", to_yaml(cfg))
    run.vocab_path.write_text(tok.to_json())
    save_checkpoint(run, 100, model_tensors(model), None, {"tokens": 0})
    return run


@pytest.fixture(scope="module")
def perm_run(tmp_path_factory):
    """A run of permutations of 4 at levels 1 and 2, trained 50 steps: level 1 (a copy) is solved,
    level 2 partly, so that exact match has something to agree on."""
    import random

    cfg = RunConfig(profile="test", model=tiny_config())
    cfg.data.task, cfg.data.difficulties, cfg.data.eval_examples = "permutation4", [1, 2], 24
    validate(cfg)
    data = TaskData(cfg)
    torch.manual_seed(0)
    model, tok = random_model(1.0, seed=1)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(50):
        x, y = data.train_batch(step, 32)
        loss = model(x, n_no_grad=random.Random(step).randint(0, 3), n_grad=2, targets=y, init_scale=0.5).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    run = RunDir.create(tmp_path_factory.mktemp("runs"), "perm-eval", to_yaml(cfg))
    run.vocab_path.write_text(tok.to_json())
    save_checkpoint(run, 50, model_tensors(model), None, {"tokens": 0})
    return run


def lm_for(**options) -> RecurlabLM:
    model, tok = trained_model()
    cfg = RunConfig(profile="test", model=tiny_config(), train=TrainConfig(r_mean=4))
    return RecurlabLM.from_source(OpenedModel(model, tok, cfg, "cpu", "test", Path("test")), **options)


def req(kind: str, *args, task: str = "t", i: int = 0) -> Instance:
    return Instance(request_type=kind, doc={}, arguments=tuple(args), idx=0, metadata=(task, i, 1))


def plain_logprob(model, tok, context: str, continuation: str, r: int) -> tuple[float, bool]:
    """Sum of log-probabilities of the continuation from one plain forward pass (no cache, no engine)."""
    ctx = [tok.bos_id] + tok.encode(context)
    cont = tok.encode(continuation)
    seq = torch.tensor([ctx + cont])
    with torch.no_grad():
        logp = model(seq[:, :-1], n_no_grad=r, n_grad=0, init_scale=0.0).logits.double().log_softmax(-1)[0]
    rows = logp[len(ctx) - 1:]
    target = torch.tensor(cont)
    return float(rows.gather(-1, target[:, None]).sum()), bool((rows.argmax(-1) == target).all())


def plain_greedy(model, tok, prompt: str, r: int, n: int) -> str:
    """Greedy decoding by repeated plain forward passes over the whole sequence, stopping at <eos>."""
    ids = [tok.bos_id] + tok.encode(prompt)
    out = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(model(torch.tensor([ids]), n_no_grad=r, n_grad=0, init_scale=0.0).logits[0, -1].argmax())
            if nxt == tok.eos_id:
                break
            out.append(nxt)
            ids.append(nxt)
    return tok.decode(out)


def test_importing_recurlab_does_not_import_lm_eval():
    code = ("import sys, recurlab, recurlab.cli, recurlab.evaluation, recurlab.evaluation.results, "
            "recurlab.cli.evaluate; bad = [m for m in ('lm_eval', 'torch') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_loglikelihood_equals_a_plain_forward_sum():
    model, tok = trained_model()
    pairs = [("12+34=", "46"), ("12+34=", "47"), ("7+8=", "15"), ("45+", "45=90"), ("", "3+4=7"), ("9+9", "=18")]
    for r in (1, 3):
        lm = lm_for(r=r, init_scale=0, batch_size=4)
        pairs_r = pairs + [("12+34=", plain_greedy(model, tok, "12+34=", r, 3))]  # one greedy continuation
        got = lm.loglikelihood([req("loglikelihood", c, x) for c, x in pairs_r])
        for (c, x), (lp, greedy) in zip(pairs_r, got):
            want_lp, want_greedy = plain_logprob(model, tok, c, x, r)
            assert abs(lp - want_lp) < 1e-5, (c, x, r, lp, want_lp)
            assert greedy == want_greedy
    assert any(g for _, g in got) and not all(g for _, g in got)  # the check saw both outcomes


def test_rolling_loglikelihood_is_the_sum_over_the_text():
    model, tok = trained_model()
    lm = lm_for(r=2, init_scale=0)
    text = "12+34=46"
    (got,) = lm.loglikelihood_rolling([req("loglikelihood_rolling", text)])
    want, _ = plain_logprob(model, tok, "", text, 2)  # <bos> is the only context
    assert abs(got - want) < 1e-5


def test_batched_results_equal_unbatched_ones():
    pairs = [("12+34=", "46"), ("7+8=", "15"), ("45+45=", "90"), ("1+99=", "100"), ("60+", "3=63")]
    for options in ({"init_scale": 1.0}, {"init_scale": 0.0, "exit": "kl:1e-3"}):
        one = lm_for(r=4, batch_size=1, **options)
        many = lm_for(r=4, batch_size=4, **options)
        a = one.loglikelihood([req("loglikelihood", c, x, i=i) for i, (c, x) in enumerate(pairs)])
        b = many.loglikelihood([req("loglikelihood", c, x, i=i) for i, (c, x) in enumerate(pairs)])
        assert [g for _, g in a] == [g for _, g in b]
        assert max(abs(x[0] - y[0]) for x, y in zip(a, b)) < 1e-5
        assert one.records == many.records
    gen = {"until": ["\n"], "max_gen_toks": 4}
    a = lm_for(r=4, batch_size=1, init_scale=1.0).generate_until([req("generate_until", p, gen) for p in PROMPTS])
    b = lm_for(r=4, batch_size=4, init_scale=1.0).generate_until([req("generate_until", p, gen) for p in PROMPTS])
    assert a == b and any(a)


def test_exit_records_the_iterations_generation_uses():
    """Scoring a greedy generation under an exit rule uses, token by token, the iterations that
    generating it used (both prefill the prompt at r and run each answer token with the rule, from
    the same random start per position)."""
    model, tok = trained_model()
    lm = lm_for(r=6, init_scale=1.0, exit="kl:1e-3", batch_size=3)
    gens = Engine(model, tok).generate(PROMPTS[:3], GenerateOptions(r=6, init_scale=1.0, exit="kl:1e-3", max_new_tokens=3))
    requests = [req("loglikelihood", p, text, task=f"t{i}") for i, (p, text) in enumerate(zip(PROMPTS[:3], gens.texts))]
    got = lm.loglikelihood(requests)
    for i, its in enumerate(gens.iterations):
        assert lm.records[f"t{i}"]["scored"] == its
        assert got[i][1]  # a greedy generation is its own argmax path
    assert any(it < 6 for its in gens.iterations for it in its)  # the rule fired somewhere


def test_generate_until_honours_stop_sequences_and_max_tokens():
    model, tok = trained_model()
    full = [plain_greedy(model, tok, p, 3, 6) for p in PROMPTS]
    lm = lm_for(r=3, init_scale=0, batch_size=4)
    stops = [text[1] if len(text) > 1 else "\n" for text in full]  # the second generated character
    outs = lm.generate_until([req("generate_until", p, {"until": [s], "max_gen_toks": 6}) for p, s in zip(PROMPTS, stops)])
    for text, stop, out in zip(full, stops, outs):
        assert out == (text[:text.index(stop)] if stop in text else text)
    short = lm.generate_until([req("generate_until", p, {"until": ["\n"], "max_gen_toks": 2}) for p in PROMPTS])
    assert short == [t[:2] for t in full]


def write_tasks(folder, model, tok, r: int):
    """A multiple-choice and an exact-match task over JSON lines, and their accuracies computed here."""
    folder.mkdir()
    mc_docs, right = [], 0
    for i, p in enumerate(PROMPTS):
        choices = ["1", "46", "15", "90"]
        scores = [plain_logprob(model, tok, p, " " + c, r)[0] for c in choices]  # lm-eval joins with " "
        best = max(range(len(choices)), key=scores.__getitem__)
        label = best if i % 2 == 0 else (best + 1) % len(choices)
        right += label == best
        mc_docs.append({"prompt": p, "choices": choices, "label": label})
    (folder / "mc.jsonl").write_text("".join(json.dumps(d) + "\n" for d in mc_docs))
    em_docs, em_right = [], 0
    for i, p in enumerate(PROMPTS):
        greedy = plain_greedy(model, tok, p, r, 4)
        answer = greedy if i % 3 else greedy + "0"
        em_right += answer == greedy
        em_docs.append({"prompt": p, "answer": answer})
    (folder / "em.jsonl").write_text("".join(json.dumps(d) + "\n" for d in em_docs))
    (folder / "mc.yaml").write_text(f"""task: local_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {folder / 'mc.jsonl'}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{prompt}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
metadata:
  version: 2.0
""")
    (folder / "em.yaml").write_text(f"""task: local_em
dataset_path: json
dataset_kwargs:
  data_files:
    test: {folder / 'em.jsonl'}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 4
metric_list:
  - metric: exact_match
metadata:
  version: 1.0
""")
    return right / len(PROMPTS), em_right / len(PROMPTS)


def test_custom_tasks_give_the_independent_accuracies_and_never_overwrite(run, tmp_path):
    model, tok = trained_model()
    want_mc, want_em = write_tasks(tmp_path / "tasks", model, tok, 3)
    assert 0 < want_mc < 1 and 0 < want_em < 1
    settings = EvalSettings(tasks=[str(tmp_path / "tasks")], rs=[3], init_scale=0.0, batch_size=4)
    first = run_eval(settings, run=run)
    got = {row["task"]: row for row in first.rows}
    assert got["local_mc"]["metric"] == "acc,none" and got["local_mc"]["value"] == pytest.approx(want_mc)
    assert got["local_em"]["metric"] == "exact_match,none" and got["local_em"]["value"] == pytest.approx(want_em)
    assert first.path.parent == run.path / "evals" and first.complete
    saved = json.loads(first.path.read_text())
    assert saved["task_versions"] == {"local_mc": 2.0, "local_em": 1.0} and saved["lm_eval_version"]
    assert saved["lm_eval"]["3"]["config"]["limit"] is None
    before = {p.name: p.read_bytes() for p in first.path.parent.glob("eval-*")}
    second = run_eval(EvalSettings(tasks=str(tmp_path / "tasks" / "em.yaml"), rs=[1, 3], init_scale=0.0), run=run)
    assert second.path != first.path
    for name, body in before.items():  # the first evaluation's files are untouched
        assert (first.path.parent / name).read_bytes() == body
    assert [row["r"] for row in second.rows] == [1, 3]
    assert len(load_evals(run.path / "evals")) >= 2


def test_embedded_tasks_agree_with_teacher_forced_accuracy_at_zero_start(perm_run):
    """Greedy exact match through lm-eval equals the sweep's teacher-forced exact match, both
    from a zero latent start (`evaluate_heldout` with the model's init_scale set to 0)."""
    from recurlab.checkpoint import load_model, run_config
    from recurlab.heldout import evaluate_heldout

    cfg = run_config(perm_run)
    model, _ = load_model(perm_run)
    model.cfg.init_scale = 0.0
    want = evaluate_heldout(model, TaskData(cfg), [1, 4], "cpu")
    res = run_eval(EvalSettings(tasks="embedded", rs=[1, 4], init_scale=0.0, exit=None, batch_size=8), run=perm_run)
    got = {(row["task"], row["r"]): row["value"] for row in res.rows}
    for row in want:
        for level in cfg.data.difficulties:
            assert got[(f"recurlab_permutation4_level{level}", row["r"])] == pytest.approx(row[f"acc@{level}"])
    assert any(v > 0 for v in got.values()) and any(v < 1 for v in got.values()), got  # not trivially equal
    assert (perm_run.path / "evals" / "tasks" / "recurlab_permutation4_level2.yaml").exists()


def test_exit_histograms_are_saved(perm_run):
    res = run_eval(EvalSettings(tasks="embedded", rs=[6], exit="kl:1e-3", limit=6, init_scale=0.0), run=perm_run)
    for row in res.rows:
        hist = res.histograms[row["task"]]["6"]
        assert sum(hist.values()) == row["tokens"] > 0
        mean = sum(int(k) * v for k, v in hist.items()) / row["tokens"]
        assert mean == pytest.approx(row["mean_iterations"]) and 1 <= mean <= 6


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(res) -> str:
    assert res.exit_code == 2, (res.exit_code, res.output)
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    return lines[0]


def test_bad_inputs_get_one_line_and_write_nothing(run, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "broken.yaml").write_text("task: [unclosed\n")
    (folder / "notask.yaml").write_text("dataset_path: json\n")
    (folder / "wrongkey.yaml").write_text("task: wrong_type\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
                                          f"    test: {folder / 'd.jsonl'}\ntest_split: test\noutput_type: bogus\n"
                                          "doc_to_text: '{{prompt}}'\ndoc_to_target: '{{answer}}'\n")
    (folder / "d.jsonl").write_text('{"prompt": "Hello", "answer": "World"}\n')
    (folder / "missing.yaml").write_text("task: missing_data\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
                                         f"    test: {folder / 'nope.jsonl'}\ntest_split: test\n"
                                         "output_type: generate_until\ndoc_to_text: '{{prompt}}'\n"
                                         "doc_to_target: '{{answer}}'\nmetric_list:\n  - metric: exact_match\n")
    (folder / "upper.yaml").write_text("task: upper_text\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
                                       f"    test: {folder / 'd.jsonl'}\ntest_split: test\n"
                                       "output_type: generate_until\ndoc_to_text: '{{prompt}}'\n"
                                       "doc_to_target: '{{answer}}'\nmetric_list:\n  - metric: exact_match\n")
    evals = run.path / "evals"
    before = sorted(p.name for p in evals.glob("*")) if evals.exists() else []
    cases = {
        "zero r": (["--tasks", "embedded", "--r", "0,4"], "r"),
        "yaml syntax": (["--tasks", folder / "broken.yaml"], "not valid YAML"),
        "no task key": (["--tasks", folder / "notask.yaml"], "no `task:` key"),
        "rejected yaml": (["--tasks", folder / "wrongkey.yaml"], "wrong_type"),
        "missing file": (["--tasks", folder / "missing.yaml"], "missing"),
        "missing yaml": (["--tasks", folder / "absent.yaml"], "does not exist"),
        "characters": (["--tasks", folder / "upper.yaml", "--r", "1"], "vocabulary"),
        "bad exit": (["--tasks", "embedded", "--exit", "bogus:1"], "exit"),
    }
    for what, (args, needle) in cases.items():
        line = one_line_error(invoke("eval", run.path, *args))
        assert needle in line, (what, line)
    assert (sorted(p.name for p in evals.glob("*")) if evals.exists() else []) == before


@pytest.mark.slow
def test_unknown_and_network_tasks_fail_in_one_line(run, monkeypatch):
    """Needs lm-eval's whole task index (seconds); the hub is made unreachable whatever the network."""
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    before = sorted((run.path / "evals").glob("eval-*"))
    for tasks, needle in (("arc_easyy", "unknown task 'arc_easyy' (did you mean arc_easy"), ("arc_easy", "hub")):
        line = one_line_error(invoke("eval", run.path, "--tasks", tasks, "--r", "1"))
        assert needle in line, line
    assert sorted((run.path / "evals").glob("eval-*")) == before


@pytest.mark.slow
def test_lm_eval_cli_runs_the_recurlab_model(run, tmp_path):
    model, tok = trained_model()
    _, want_em = write_tasks(tmp_path / "tasks", model, tok, 2)
    res = subprocess.run([sys.executable, "-m", "recurlab.evaluation.lm_eval_cli", "--model", "recurlab",
                          "--model_args", f"run={run.path},r=2,init_scale=0", "--tasks", "local_em",
                          "--include_path", str(tmp_path / "tasks"), "--batch_size", "4"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    line = next(ln for ln in res.stdout.splitlines() if "local_em" in ln)
    assert f"{want_em:.4f}" in line, res.stdout
