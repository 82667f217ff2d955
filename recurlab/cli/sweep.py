"""`recurlab sweep RUN --r 1,2,4,8,16,32`: evaluate a checkpoint at each r, print and save a table.

    recurlab sweep cpu-demo --r 1,2,3,4,5,6,8,16,32
    recurlab sweep cpu-demo --r 4,8,16,32 --difficulties 5,6     # levels harder than any trained
"""

from __future__ import annotations

import typer

from recurlab.cli.app import app
from recurlab.cli.common import RunsDirOption, get_run, user_errors


@app.command()
def sweep(
    run: str = typer.Argument(..., help="Run name, unique prefix, or path."),
    r: str = typer.Option("", "--r", help="Comma-separated r values (default: 1,2,4,...,4*r_mean)."),
    step: int = typer.Option(None, "--step", help="Checkpoint step (default: the latest complete one)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
    difficulties: str = typer.Option("", "--difficulties", help="Task levels to evaluate instead of the run's, e.g. 5,6 (saved as a separate sweep)."),
    runs_dir: str = RunsDirOption,
):
    """Held-out loss, exact-match accuracy per difficulty (or bits per byte) and tokens/s per r."""
    rundir = get_run(run, runs_dir)
    with user_errors():
        from recurlab.config import default_rs, run_config
        from recurlab.sweep import format_table, parse_levels, parse_rs, run_sweep

        cfg = run_config(rundir)
        rs = parse_rs(r) if r else default_rs(cfg.train.r_mean)
        levels = parse_levels(difficulties) if difficulties else None
        shown = []

        def progress(row: dict) -> None:
            # the header waits for the first row, so that a refused sweep prints only its error line
            if not shown:
                typer.echo(f"sweeping {rundir.name} at r = {', '.join(map(str, rs))}", err=True)
                shown.append(True)
            typer.echo(f"  r={row['r']} loss {row['loss']:.4f}", err=True)

        result = run_sweep(rundir, rs, step=step, device=device, difficulties=levels, on_row=progress)
    typer.echo(f"run {result.run}, checkpoint step {result.step}")
    typer.echo(format_table(result.rows))
    typer.echo(f"wrote {result.path} and {result.path.with_suffix('.json')}")
