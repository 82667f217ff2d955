"""`recurlab compare`: train the four models of the seeds' comparison and tabulate their sweeps.

    recurlab compare --profile compare data.name=/data/math-text --r 1,2,4,8,16 --runs-dir runs

Trains latent recurrence, token recurrence, fixed depth (same parameters) and fixed depth
(matched compute) one after the other in the foreground, then prints validation loss and bits
per byte per r and writes RUNS_DIR/compare.csv and compare.json, or compare-2.* and so on: an earlier
comparison is never replaced (see recurlab.compare).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from recurlab.cli.app import app, examples
from recurlab.cli.common import RunsDirOption, fail, user_errors


@app.command(epilog=examples('recurlab compare --profile compare data.name=corpus/ --r 1,2,4,8,16'))
def compare(
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides, e.g. data.name=/path/to/text."),
    profile: str = typer.Option("compare", "--profile", "-p", help="Profile for all four runs (model.arch is set per run)."),
    r: str = typer.Option("1,2,4,8,16", "--r", help="Comma-separated r values for the sweeps."),
    name: str = typer.Option("", "--name", help="Prefix of the four run names (default: PROFILE-MMDD-HHMMSS)."),
    device: str = typer.Option("", "--device", help="Device for training and sweeps (default: the profile's)."),
    runs_dir: str = RunsDirOption,
) -> None:
    """Train latent recurrence, token recurrence and two fixed-depth baselines on the same data; one table."""
    # the comparison and the sweep files: not at start-up, only this command needs them
    from recurlab.compare import ComparisonError, format_comparison, run_comparison
    from recurlab.sweep import parse_rs

    with user_errors():
        rs = parse_rs(r)
        try:
            table = run_comparison(profile, list(overrides or []), runs_dir, rs, name=name, device=device,
                                   progress=True, log=lambda m: typer.echo(m, err=True))
        except ComparisonError as exc:
            fail(str(exc), code=1)
    typer.echo(format_comparison(table))
    typer.echo(f"wrote {table['path']} and {Path(table['path']).with_suffix('.json')}")
