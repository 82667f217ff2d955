"""`recurlab export RUN OUT_DIR`: a trained run as a Hugging Face folder in Huginn-0125's format.

    recurlab export cpu-demo exports/cpu-demo
    recurlab generate --model exports/cpu-demo --prompt "<bos>12+34=" --r 8     # the same logits as the run

torch loads only inside the command.
"""

from __future__ import annotations

from typing import Optional

import typer

from recurlab.cli.app import app, examples
from recurlab.cli.common import RunsDirOption, get_run, user_errors


@app.command(epilog=examples('recurlab export demo exported/demo'))
def export(
    run: str = typer.Argument(..., help="Run name, unique prefix, or run directory."),
    out_dir: str = typer.Argument(..., help="New folder to write (refused if it exists and is not empty)."),
    step: Optional[int] = typer.Option(None, "--step", help="Checkpoint step (default: the latest complete one)."),
    runs_dir: str = RunsDirOption,
):
    """Write config.json, model.safetensors and tokenizer.json that Huginn's reference code can load."""
    rundir = get_run(run, runs_dir)
    with user_errors():
        from recurlab.families.export import export_run  # not at start-up: every command imports this module

        out, note = export_run(rundir, out_dir, step=step)
    typer.echo(f"wrote {out} (Huginn format); open it with --model {out}")
    if note:
        typer.echo(f"note: {note}", err=True)
