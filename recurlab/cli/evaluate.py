"""`recurlab eval`: lm-evaluation-harness tasks at several r, with per-token exit statistics.

    recurlab eval cpu-demo --tasks embedded --r 1,4,8,32 --exit kl:5e-4
    recurlab eval cpu-demo --tasks my_tasks/qa.yaml,my_tasks/ --r 1,8 --limit 100
    recurlab eval --model models/huginn-0125 --tasks gsm8k,arc_easy --r 4,8,16,32 --device cuda --out evals/huginn

Needs the `eval` extra (lm-eval); torch and lm-eval load only inside the command.
"""

from __future__ import annotations

from typing import Optional

import typer

from recurlab.cli.app import app, examples
from recurlab.cli.common import RunsDirOption, fail, get_run, user_errors
from recurlab.options.generate import DEVICE, DEVICE_HELP


@app.command("eval", epilog=examples('recurlab eval demo --tasks embedded --r 1,4,8', 'recurlab eval cpu-demo --tasks my_tasks/ --r 1,8 --exit kl:5e-4 --limit 100'))
def evaluate(
    run: Optional[str] = typer.Argument(None, help="Run name, unique prefix, or path (or use --model)."),
    tasks: str = typer.Option(..., "--tasks", help="Comma-separated lm-eval task names, YAML files, folders of YAML files, or 'embedded' (the run's own task)."),
    r: str = typer.Option("1,4,8,16,32", "--r", help="Comma-separated r values; one lm-eval run each."),
    exit: Optional[str] = typer.Option(None, "--exit", help="Per-token adaptive exit, e.g. kl:5e-4; records the iterations each token used."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most N documents per task."),
    num_fewshot: Optional[int] = typer.Option(None, "--num-fewshot", help="Few-shot examples (default: each task's own)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Requests per batch (left-padded)."),
    checkpoint: Optional[int] = typer.Option(None, "--checkpoint", help="Checkpoint step (default: the latest complete one)."),
    device: str = typer.Option(DEVICE, "--device", help=DEVICE_HELP),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32, bfloat16 or float16 (default: the model's)."),
    init_scale: Optional[float] = typer.Option(None, "--init-scale", help="Std of the random latent start (0: zero start). Default: the model's."),
    kv_budget: Optional[int] = typer.Option(None, "--kv-budget", help="KV cache slots per token (iteration i uses slot i mod n)."),
    seed: int = typer.Option(0, "--seed"),
    out: Optional[str] = typer.Option(None, "--out", help="Output folder (default: RUN/evals, or ./evals/<model folder name> for --model)."),
    model_path: Optional[str] = typer.Option(None, "--model", help="A Huginn-format model folder instead of a run."),
    runs_dir: str = RunsDirOption,
):
    """Evaluate a run (or a Huginn folder) on lm-eval tasks at each r; print a task x r table.

    The table is saved as JSON and CSV under RUN/evals/ and never replaces an earlier evaluation."""
    if bool(run) == bool(model_path):
        fail("give either a RUN or --model PATH (a Huginn-format folder), not both or neither")
    rundir = get_run(run, runs_dir) if run else None
    with user_errors():
        try:
            import lm_eval  # noqa: F401
        except ModuleNotFoundError:
            fail("lm-eval is not installed: pip install 'recurlab[eval]'")
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        # the evaluation and the sweep files: not at start-up, only this command needs them
        from recurlab.evaluation.results import format_table
        from recurlab.evaluation.runner import EvalSettings, run_eval
        from recurlab.sweep import parse_rs

        settings = EvalSettings(tasks=tasks, rs=parse_rs(r), exit=exit, limit=limit, num_fewshot=num_fewshot,
                                batch_size=batch_size, checkpoint=checkpoint, device=device, dtype=dtype,
                                init_scale=init_scale, kv_budget=kv_budget, seed=seed)
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            transient=True)
        bars: dict = {}

        def on_progress(rv: int, done: int, total: int, kind: str) -> None:
            key = (rv, kind)
            if key not in bars:
                if not progress.live.is_started:
                    progress.start()
                bars[key] = progress.add_task(f"r={rv} {kind}", total=total)
            progress.update(bars[key], completed=done, total=total)

        def on_row(row: dict, _hist: dict) -> None:
            its = f", {row['mean_iterations']:.2f} it/token" if row.get("mean_iterations") is not None else ""
            progress.console.print(f"  r={row['r']} {row['task']}: {row['metric']} {row['value']:.4f}{its}")

        try:
            result = run_eval(settings, run=rundir, model_path=model_path, out_dir=out, runs_dir=runs_dir,
                              on_progress=on_progress, on_row=on_row)
        finally:
            progress.stop()
    typer.echo(f"{result.record['source']['label']}  exit: {exit or 'off'}  lm-eval {result.record['lm_eval_version']}")
    typer.echo(format_table(result.rows, settings.rs))
    if result.path is not None:
        typer.echo(f"wrote {result.path} and {result.path.with_suffix('.csv')}")
