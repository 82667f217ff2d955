"""`recurlab sweep RUN --r 1,2,4,8,16,32`: evaluate a checkpoint at each r, print and save a table.

    recurlab sweep cpu-demo --r 1,2,3,4,5,6,8,16,32
    recurlab sweep cpu-demo --r 4,8,16,32 --difficulties 5,6     # levels harder than any trained
    recurlab sweep 'perm-s*' --r 1,8,32 --difficulties 5,6        # several runs (seeds): mean ± sd per level and r
"""

from __future__ import annotations

from typing import List, Optional

import typer

from recurlab.cli.app import app, examples
from recurlab.cli.common import RunsDirOption, get_run, print_table, user_errors
from recurlab.config import default_rs, run_config
from recurlab.errors import InferenceError
from recurlab.options.generate import DEVICE, DEVICE_HELP


@app.command(epilog=examples('recurlab sweep demo --r 1,2,4,8', 'recurlab sweep cpu-demo --r 1,2,4,8,16,32 --difficulties 5,6', "recurlab sweep 'perm-s*' --r 8,32 --out perm.csv"))
def sweep(
    runs: List[str] = typer.Argument(..., help="Run name, unique prefix, or path; several (or a pattern like 'perm-s*') "
                                               "sweep each and print the mean ± sd over them."),
    r: Optional[str] = typer.Option(None, "--r", help="Comma-separated r values (default: 1,2,4,...,4*r_mean)."),
    step: int = typer.Option(None, "--step", help="Checkpoint step (default: the latest complete one)."),
    device: str = typer.Option(DEVICE, "--device", help=DEVICE_HELP),
    difficulties: Optional[str] = typer.Option(None, "--difficulties", help="Task levels to evaluate instead of the run's, e.g. 5,6 (saved as a separate sweep)."),
    reuse: bool = typer.Option(False, "--reuse", help="Use a saved sweep of the same checkpoint, levels and r when there is one."),
    out: str = typer.Option("", "--out", help="Several runs: also write the mean/sd table to this new CSV file."),
    runs_dir: str = RunsDirOption,
):
    """Held-out loss, exact-match accuracy per difficulty (or bits per byte) and tokens/s per r."""
    if len(runs) > 1 or any(ch in runs[0] for ch in "*?[") or reuse or out:
        _sweep_many(runs, r, step, device, difficulties, reuse, out, runs_dir)
        return
    rundir = get_run(runs[0], runs_dir)
    with user_errors():
        from recurlab.engine import open_model, run_sweep  # torch and safetensors: loaded only when this runs
        from recurlab.sweep import format_heldout, parse_levels, parse_rs, table_cells  # not at start-up: every command imports this module

        cfg = run_config(rundir)
        # given, even empty: parsed (an empty value is an error, not the default)
        rs = parse_rs(r) if r is not None else default_rs(cfg.train.r_mean)
        levels = parse_levels(difficulties) if difficulties is not None else None
        shown = []

        def progress(row: dict) -> None:
            # the header waits for the first row, so that a refused sweep prints only its error line
            if not shown:
                typer.echo(f"sweeping {rundir.name} at r = {', '.join(map(str, rs))}", err=True)
                shown.append(True)
            typer.echo(f"  r={row['r']} loss {row['loss']:.4f}", err=True)

        result = run_sweep(open_model(rundir, step=step, device=device), rs, difficulties=levels, on_row=progress)
    typer.echo(f"run {result.run}, checkpoint step {result.step}")
    print_table(*table_cells(result.rows), right=True)
    if result.heldout:
        typer.echo(format_heldout(result.heldout))
    typer.echo(f"wrote {result.path} and {result.path.with_suffix('.json')}")


def _sweep_many(specs: list[str], r: str, step, device: str, difficulties: str, reuse: bool, out: str,
                runs_dir: str) -> None:
    """Sweep every run (or reuse its saved sweep), then the mean and spread over them."""
    from pathlib import Path

    from recurlab.engine import open_model, run_sweep  # torch and safetensors: loaded only when this runs
    # not at start-up: every command imports this module
    from recurlab.replicates import aggregate, check_out, expand_runs, format_aggregate, saved_sweep, to_csv, write_out
    from recurlab.sweep import parse_levels, parse_rs

    with user_errors():
        rundirs = expand_runs(specs, runs_dir)
        if not r:
            raise InferenceError("several runs need --r (the same r for every run), e.g. --r 1,8,32")
        rs = parse_rs(r)
        levels = parse_levels(difficulties) if difficulties is not None else None
        if out:
            check_out(Path(out))  # before the first sweep is written
        if reuse and step is not None:
            raise InferenceError("--reuse takes each run's latest checkpoint; drop --step")
        results = []
        for rundir in rundirs:
            res = saved_sweep(rundir, rs, levels) if reuse else None
            if res is not None:
                typer.echo(f"{rundir.name}: reusing {res.path.name} (step {res.step})", err=True)
            else:
                typer.echo(f"{rundir.name}: sweeping r = {', '.join(map(str, rs))}", err=True)
                res = run_sweep(open_model(rundir, step=step, device=device), rs, difficulties=levels)
                typer.echo(f"{rundir.name}: wrote {res.path}", err=True)
            results.append(res)
        agg = aggregate(results)
        typer.echo(f"{len(results)} runs: " + ", ".join(f"{n} (step {s})" for n, s in zip(agg.runs, agg.steps)))
        typer.echo(format_aggregate(agg))
        if out:
            write_out(Path(out), to_csv(agg))
            typer.echo(f"wrote {out}")
