"""`recurlab lens train`: fit a tuned lens (one affine translator per core iteration) and save it
in the run directory (./lenses/ for a model folder), never replacing an earlier one.

    recurlab lens train cpu-demo                          # the run's own data, r = 2 x r_mean
    recurlab lens train cpu-demo --r 16 --steps 500 --place head
    recurlab lens train --model models/ouro-1.4b --data notes.txt --device cuda
    recurlab plot lens cpu-demo                           # KL to final vs iteration, one line per lens

torch loads only inside the command.
"""

from __future__ import annotations

from typing import Optional

import typer

from recurlab.cli.app import app, examples
from recurlab.cli.common import RunsDirOption, print_table, user_errors
from recurlab.cli.infer import ModelOption, RunArgument, _open
from recurlab.errors import InferenceError
from recurlab.options.generate import DEVICE, DEVICE_HELP

lens_app = typer.Typer(help="Tuned lenses: train one per run or model folder (the Inspector's l key cycles lenses).",
                       invoke_without_command=True, epilog=examples("recurlab lens train cpu-demo"))
app.add_typer(lens_app, name="lens")


@lens_app.callback()
def lens(ctx: typer.Context) -> None:
    """Tuned lenses: train one per run or model folder (the Inspector's l key cycles lenses)."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


@lens_app.command("train", epilog=examples("recurlab lens train cpu-demo", "recurlab lens train cpu-demo --r 8 --steps 150 --place head",
                                             "recurlab lens train --model models/ouro --data notes.txt"))
def train(
    run: Optional[str] = RunArgument,
    data: Optional[str] = typer.Option(None, "--data", help="A UTF-8 text file, one sequence per line (every 10th held out); default: the run's own data."),
    r: Optional[int] = typer.Option(None, "--r", help="Iterations to fit a translator for (default: 2 x the run's r_mean); later iterations use the last one."),
    steps: int = typer.Option(300, "--steps", help="Optimizer steps."),
    batch_size: int = typer.Option(32, "--batch-size", help="Sequences per step."),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate."),
    place: str = typer.Option("coda", "--place", help="coda: translator, then the coda; head: translator, then the final norm and head."),
    seed: int = typer.Option(0, "--seed"),
    name: Optional[str] = typer.Option(None, "--name", help="File name in lenses/ (default: tuned-<time>; a taken name gets -2, ...)."),
    step: Optional[int] = typer.Option(None, "--step", help="Checkpoint step (default: the latest)."),
    device: str = typer.Option(DEVICE, "--device", help=DEVICE_HELP),
    runs_dir: str = RunsDirOption,
    model_path: Optional[str] = ModelOption,
):
    """Train a tuned lens with a progress bar, print held-out KL to the final distribution per iteration for the coda, logit and tuned lenses, and save it."""
    with user_errors():
        from recurlab.engine.lens import PLACES  # torch: loaded only when this runs
        from recurlab.engine.records import check_name

        if place not in PLACES:
            raise InferenceError(f"--place {place!r} must be one of {', '.join(PLACES)}")
        if r is not None and r < 1:
            raise InferenceError(f"--r must be >= 1, got {r}")
        if name is not None:
            check_name(name)
        opened = _open(run, model_path, runs_dir, step, device)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from recurlab.engine.lens_train import lens_sequences, save_tuned_lens, train_tuned_lens  # torch: loaded only when this runs
        from recurlab.engine.records import record_root

        iterations = r or 2 * opened.r_mean
        train_seqs, heldout, where = lens_sequences(opened, data, seed=seed)
        typer.echo(f"tuned lens for {opened.label}: {iterations} iterations, {len(train_seqs)} training and "
                   f"{len(heldout)} held-out sequences from {where}", err=True)
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("KL {task.fields[kl]}"), transient=False)
        with progress:
            bar = progress.add_task("training", total=steps, kl="-")
            lens, report = train_tuned_lens(opened.model, train_seqs, heldout, iterations, steps=steps, batch_size=batch_size,
                                            lr=lr, place=place, seed=seed,
                                            on_step=lambda k, loss: progress.update(bar, completed=k, kl=f"{loss:.4f}"))
        report["data"] = where
        paths = save_tuned_lens(record_root(opened), lens, report, name, source=opened.source)
    kl = report["kl"]
    print_table(["iteration", "coda lens", "logit lens", "tuned lens"],
                [[str(i + 1)] + [f"{kl[k][i]:.4g}" for k in ("coda", "logit", "tuned")] for i in range(iterations)], right=True)
    typer.echo(f"held-out KL(p_r || lens) in nats; lens written to {paths['safetensors']} and {paths['json']}")
