"""One lm-eval run per r on one loaded model, with rows saved as they finish.

    settings = EvalSettings(tasks="embedded", rs=[1, 4, 8, 32], exit="kl:5e-4", limit=100)
    result = run_eval(settings, run=run_dir)                           # -> RUN/evals/eval-*.json|csv
    result = run_eval(settings, model_path="models/huginn-0125", out_dir="evals/huginn")
    result.rows, result.histograms, result.path, result.complete

Everything that can be checked (r values, exit rule, tasks and their data, the output folder) is
checked before the model loads; nothing is written until the first r has finished. Callbacks:
`on_progress(r, done, total, kind)` per batch of requests, `on_row(row)` per finished (task, r);
setting `cancel` stops within a batch and keeps the r values already finished.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from recurlab.config import run_config
from recurlab.errors import InferenceError
from recurlab.evaluation.results import EvalWriter, histogram, primary_metric
from recurlab.evaluation.tasks import resolve_tasks
from recurlab.options.generate import BATCHINGS, parse_exit
from recurlab.rundir import folder_problem


@dataclass
class EvalSettings:
    tasks: str | list[str]
    rs: list[int]
    exit: str | None = None
    limit: int | None = None
    num_fewshot: int | None = None
    batch_size: int = 8
    checkpoint: int | None = None
    device: str = "cpu"
    dtype: str | None = None
    init_scale: float | None = None
    kv_budget: int | None = None
    seed: int = 0
    batching: str = "auto"  # under an exit rule: depth (the default) or padded batches (GenerateOptions.batching)

    def validate(self) -> "EvalSettings":
        if not self.rs or any(not isinstance(r, int) or r < 1 for r in self.rs):
            raise InferenceError(f"--r values must be whole numbers >= 1 (r = 0 runs no recurrence), got {self.rs}")
        parse_exit(self.exit or None)
        if self.batching not in BATCHINGS:
            raise InferenceError(f"--batching must be one of {', '.join(BATCHINGS)}, got {self.batching!r}")
        for what, v in (("--limit", self.limit), ("--batch-size", self.batch_size), ("--kv-budget", self.kv_budget)):
            if v is not None and v < 1:
                raise InferenceError(f"{what} must be >= 1, got {v}")
        if self.num_fewshot is not None and self.num_fewshot < 0:
            raise InferenceError(f"--num-fewshot must be >= 0, got {self.num_fewshot}")
        if self.init_scale is not None and not self.init_scale >= 0:
            raise InferenceError(f"--init-scale must be >= 0 (0 = zero start), got {self.init_scale}")
        return self


@dataclass
class EvalResult:
    rows: list[dict] = field(default_factory=list)
    histograms: dict = field(default_factory=dict)
    path: Path | None = None
    complete: bool = False
    record: dict = field(default_factory=dict)


def default_out_dir(model_path: str | Path) -> Path:
    """Where evaluations of a --model folder go unless --out names a folder: ./evals/<folder name>/."""
    return Path("evals") / Path(model_path).resolve().name


def run_eval(settings: EvalSettings, run=None, model_path=None, out_dir=None, runs_dir="runs", source=None,
             on_progress=None, on_row=None, cancel: threading.Event | None = None) -> EvalResult:
    settings.validate()
    if bool(run) == bool(model_path) and source is None:
        raise InferenceError("give either a RUN or --model PATH, not both or neither")
    cfg = None
    if run is not None:
        cfg = run_config(run)
    out = Path(out_dir) if out_dir else (run.path / "evals" if run is not None else default_out_dir(model_path))
    problem = folder_problem(out)
    if problem:
        raise InferenceError(f"--out {str(out)!r}: {problem}; choose another output folder with --out")

    from lm_eval import simple_evaluate

    from recurlab.evaluation.lm import EvalCancelled, RecurlabLM, open_source  # lm-eval: loaded only when this runs

    # the model (and so its checkpoint) before the tasks: `embedded` writes the run's evals/tasks/
    if source is None:
        source = open_source(run=run, model=model_path, checkpoint=settings.checkpoint, device=settings.device,
                             dtype=settings.dtype, runs_dir=runs_dir)
    plan = resolve_tasks(settings.tasks, run=run, cfg=cfg)
    lm = RecurlabLM.from_source(source, r=settings.rs[0], exit=settings.exit, kv_budget=settings.kv_budget,
                                init_scale=settings.init_scale, batch_size=settings.batch_size, seed=settings.seed,
                                batching=settings.batching)
    lm.cancel = cancel
    import lm_eval

    record = {
        "source": {"run": str(run.path) if run is not None else None, "model": str(model_path) if model_path else None,
                   "label": source.label, "checkpoint_step": source.step},
        "rs": list(settings.rs), "tasks": plan.names, "task_spec": settings.tasks, "exit": settings.exit,
        "settings": {k: v for k, v in vars(settings).items()}, "lm_eval_version": lm_eval.__version__,
        "task_versions": plan.versions, "time": time.time(), "complete": False,
        "rows": [], "histograms": {}, "lm_eval": {},
    }
    result = EvalResult(record=record)
    writer = EvalWriter(out)
    for r in settings.rs:
        lm.r = r
        lm.reset_records()
        lm.on_progress = (lambda done, total, kind, r=r: on_progress(r, done, total, kind)) if on_progress else None
        try:
            with _quiet_lm_eval():
                res = simple_evaluate(model=lm, tasks=list(plan.names), task_manager=plan.manager,
                                      limit=settings.limit, num_fewshot=settings.num_fewshot, log_samples=False,
                                      random_seed=settings.seed, numpy_random_seed=settings.seed,
                                      torch_random_seed=settings.seed, fewshot_random_seed=settings.seed)
        except EvalCancelled:
            break
        rows = _rows(res, plan, r, lm.records, settings.exit)
        for row in rows:
            result.rows.append(row)
            hist = histogram(lm.records_for(_leaves_of(row["task"], plan)))
            result.histograms.setdefault(row["task"], {})[str(r)] = hist
            if on_row is not None:
                on_row(row, hist)
        record["rows"], record["histograms"] = result.rows, result.histograms
        record["lm_eval"][str(r)] = {"config": res.get("config"), "versions": res.get("versions"),
                                      "n-shot": res.get("n-shot"), "n-samples": res.get("n-samples"),
                                      "results": res.get("results"), "configs": res.get("configs")}
        record["complete"] = r == settings.rs[-1]
        result.path = writer.save(record)
    result.complete = record["complete"]
    return result


@contextmanager
def _quiet_lm_eval():
    """Keep lm-eval's terminal output out of ours (a progress bar or the TUI): its per-task tqdm bar
    goes, datasets' bars go, and `git describe` (which lm-eval records, and which prints "fatal:
    not a git repository" outside one) runs with git's stderr discarded."""
    import functools
    import subprocess

    import datasets
    from lm_eval import evaluator
    from lm_eval.api import task as lm_task

    datasets.disable_progress_bars()
    original, original_tqdm = evaluator.get_git_commit_hash, lm_task.tqdm

    def quiet() -> str | None:
        try:
            return subprocess.check_output(["git", "describe", "--always"], stderr=subprocess.DEVNULL).strip().decode()
        except (subprocess.CalledProcessError, FileNotFoundError):
            return None

    evaluator.get_git_commit_hash = quiet
    lm_task.tqdm = functools.partial(original_tqdm, disable=True)
    try:
        yield
    finally:
        evaluator.get_git_commit_hash, lm_task.tqdm = original, original_tqdm


def _leaves_of(task: str, plan) -> list[str]:
    return plan.group_leaves.get(task, [task])


def _rows(res: dict, plan, r: int, records, exit_spec) -> list[dict]:
    rows = []
    for name in plan.names:
        task_res = res["results"].get(name)
        if task_res is None:
            continue
        picked = primary_metric(task_res)
        if picked is None:
            continue
        key, value, err = picked
        its = [it for leaf in _leaves_of(name, plan) for kind in ("scored", "generated")
               for it in records.get(leaf, {}).get(kind, [])] if exit_spec else []
        n = sum(int((res.get("n-samples", {}).get(leaf) or {}).get("effective", 0)) for leaf in _leaves_of(name, plan))
        rows.append({"task": name, "r": r, "metric": key, "value": value, "stderr": err, "n": n,
                     "mean_iterations": sum(its) / len(its) if its else None, "tokens": len(its)})
    return rows
