"""Commands that start, watch and control training runs, and show the profiles.

    recurlab train --profile tiny train.max_steps=200 --name smoke   # detached; returns at once
    recurlab runs                                                    # table of all runs
    recurlab runs --where r_mean=16 --where state=finished --json     # for scripts
    recurlab status smoke        recurlab logs smoke -f
    recurlab stop smoke          recurlab resume smoke
    recurlab profiles            recurlab profiles show cpu r_mean=16

Everything here reads and writes the run directory through recurlab.rundir; the worker is a
separate process (`python -m recurlab.worker RUN_DIR`) in its own session, so it outlives the
terminal. No torch at module level: `recurlab runs` must start fast.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from recurlab.cli.app import app, examples
from recurlab.cli.common import RunsDirOption, fail, get_run, print_table, user_errors
from recurlab.config import (
    BUILTIN_PROFILES,
    from_dict,
    load_yaml,
    profile_names,
    profile_path,
    run_config,
    to_yaml,
)
from recurlab.launch import WorkerStartError
from recurlab.lifecycle import (
    GRACEFUL_STOP_WAIT_S, NAME_RE, POLL_S, check_resumable, create_run, plan_run, resolve_profile, resume_run, start_run, stop_run,
    torchrun_launch,
    train_foreground,
)
from recurlab.rundir import ACTIVE_STATES, RunDir, check_readable_runs_dir, list_runs, read_json

profiles_app = typer.Typer(help="List the training profiles, or print one resolved.", invoke_without_command=True,
                           epilog=examples("recurlab profiles", "recurlab profiles show tiny k=1"))
app.add_typer(profiles_app, name="profiles")


# ---- helpers ------------------------------------------------------------------------------

NprocOption = typer.Option(1, "--nproc", help="Processes (GPUs) on this machine; more than 1 runs the worker under torchrun.")
NnodesOption = typer.Option(1, "--nnodes", help="Machines in the job; run the printed command on each of the others.")
RdzvOption = typer.Option("", "--rdzv-endpoint", help="HOST:PORT of one machine of the job, for --nnodes > 1.")


def _torchrun(run_path: Path, cfg, resume: bool, device: str, nproc: int, nnodes: int, rdzv: str) -> list[str] | None:
    """The torchrun line for a multi-process run (see recurlab/distributed.py), printed for other machines."""
    with user_errors():
        cmd = torchrun_launch(run_path, cfg, resume, device, nproc, nnodes, rdzv)
    if cmd and nnodes > 1:
        typer.echo(f"start the same job on each of the other {nnodes - 1} machines (the run directory must be "
                   f"shared at the same path): {shlex.join(cmd)}", err=True)
    return cmd


def _watch_hint(run: RunDir, runs_dir: str) -> str:
    flag = "" if Path(runs_dir) == Path("runs") else f" --runs-dir {runs_dir}"
    return f"watch it with `recurlab logs {run.name} -f{flag}` or `recurlab tui {run.path}`"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def _fmt(value, spec: str = "") -> str:
    if value is None:
        return "-"
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


# ---- commands -----------------------------------------------------------------------------


@app.command(epilog=examples('recurlab train --profile tiny --name demo --foreground', 'recurlab train --profile cpu --name cpu-demo train.max_steps=800 r_mean=16', 'recurlab train --profile cpu --name perm --seeds 0,1,2'))
def train(
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value or section.key=value overrides."),
    profile: str = typer.Option("cpu", "--profile", "-p", help="Profile name (see `recurlab profiles`) or a .yaml path."),
    name: Optional[str] = typer.Option(None, "--name", help="Run name (default: PROFILE-MMDD-HHMMSS)."),
    runs_dir: str = RunsDirOption,
    device: str = typer.Option("", "--device", help="Device for this run, e.g. cpu, cuda, cuda:1."),
    foreground: bool = typer.Option(False, "--foreground", help="Train in this process with a progress bar."),
    nproc: int = NprocOption,
    nnodes: int = NnodesOption,
    rdzv_endpoint: str = RdzvOption,
    seeds: str = typer.Option("", "--seeds", help="Train one run per seed, NAME-s0, NAME-s1, ... (e.g. 0,1,2): "
                                                  "detached they all start at once, --foreground one after another."),
) -> None:
    """Create a run directory from a profile and start training it in a detached worker."""
    if seeds:
        _train_seeds(seeds, list(overrides or []), profile, name, runs_dir, device, foreground, nproc, nnodes,
                     rdzv_endpoint)
        return
    with user_errors():
        plan = plan_run(runs_dir, profile, list(overrides or []), name=name, device=device)
    launch = _torchrun(plan.path, plan.cfg, False, device, nproc, nnodes, rdzv_endpoint)
    if foreground:
        with user_errors():
            run = create_run(plan)
            if launch:
                proc = subprocess.Popen(launch)  # ranks log to this terminal
                while proc.poll() is None:  # Ctrl-C reaches the ranks through torchrun as a graceful stop; keep waiting
                    try:
                        proc.wait()
                    except KeyboardInterrupt:
                        pass
            else:
                train_foreground(run, device)
        _exit_for_state(run)
        return
    with user_errors():
        try:
            run, pid = start_run(plan, launch=launch)
        except WorkerStartError as exc:
            fail(str(exc), code=1)
    typer.echo(run.name)
    typer.echo(f"started worker pid {pid} in {run.path}; {_watch_hint(run, runs_dir)}", err=True)


def _train_seeds(spec: str, overrides: list[str], profile: str, name: str | None, runs_dir: str, device: str,
                 foreground: bool, nproc: int, nnodes: int, rdzv: str) -> None:
    """One run per seed, NAME-sS; every run is planned (and so checked) before the first is created."""
    from recurlab.replicates import parse_seeds, seed_run_name  # not at start-up: every command imports this module

    with user_errors():
        seed_list = parse_seeds(spec)
        if any(o.split("=", 1)[0].strip() in ("seed", "train.seed") for o in overrides):
            fail("--seeds sets train.seed for each run; drop the train.seed override")
        if name is None:
            name = plan_run(runs_dir, profile, overrides, device=device).name
        if not NAME_RE.match(name):
            fail(f"--name {name!r}: use letters, digits, '.', '_' and '-', starting with a letter or digit")
        names = [seed_run_name(name, s) for s in seed_list]
        for s, run_name in zip(seed_list, names):
            plan_run(runs_dir, profile, overrides + [f"train.seed={s}"], name=run_name, device=device)
    for s, run_name in zip(seed_list, names):
        try:
            train(overrides + [f"train.seed={s}"], profile, run_name, runs_dir, device, foreground, nproc, nnodes, rdzv, "")
        except typer.Exit as exc:  # a failed foreground run ends the series; the runs before it are kept
            if exc.exit_code:
                done = ", ".join(names[: names.index(run_name)]) or "none"
                fail(f"{run_name} did not finish; complete before it: {done}", code=exc.exit_code)


def _exit_for_state(run: RunDir) -> None:
    status = run.read_status()
    state = run.effective_state(status)
    if state == "failed":
        # one line; the traceback is in worker.log
        fail(f"run {run.name} failed at step {status.get('step')}: {status.get('error') or 'see the log'}; "
             f"the traceback is in {run.log_path}", code=1)
    typer.echo(f"{run.name}: {state} at step {status.get('step')}", err=True)


@app.command(epilog=examples('recurlab runs', 'recurlab runs --runs-dir /data/runs',
                             'recurlab runs --where r_mean=16 --where state=finished --json'))
def runs(
    runs_dir: str = RunsDirOption,
    as_json: bool = typer.Option(False, "--json", help="Print the runs as JSON: status, flat config, differing keys."),
    where: Optional[List[str]] = typer.Option(None, "--where", help="Only runs that match, e.g. r_mean=16, "
                                              "state=finished, loss<2, name~seed (repeat to require several)."),
) -> None:
    """Table of runs: name, state, step, loss, tokens/s, age (stale heartbeats show as "lost"), and a column for every config key that differs among the runs listed."""  # noqa: E501  (one help paragraph)
    from recurlab.runtable import differing_keys, load_records, parse_filter, short_names, show  # not at start-up: every command imports this module

    with user_errors():
        check_readable_runs_dir(runs_dir)
        records = load_records(runs_dir)
        extra = tuple({k for r in records for k in (r.config or {})})
        flt = parse_filter(" ".join(shlex.quote(w) for w in where or []), extra)
    records = [r for r in records if flt.matches(r)]
    keys = differing_keys([r.config for r in records])
    if as_json:
        out = {"runs_dir": str(runs_dir), "where": flt.text, "differing_keys": keys, "runs": [
            {"name": r.name, "path": str(r.run.path), "state": r.state, "profile": r.value("profile"),
             "family": r.value("family"), "status": r.status, "differs": {k: r.value(k) for k in keys},
             "config": r.config} for r in records]}
        typer.echo(json.dumps(out, indent=1, default=list))
        return
    if not records:
        hint = "no run matches the --where filter" if flt else "start one with `recurlab train --profile cpu`"
        typer.echo(f"no runs in {runs_dir} ({hint})")
        return
    now = time.time()
    rows = []
    for rec in records:
        st = rec.status
        step = _fmt(st.get("step"))
        if st.get("max_steps"):
            step += f"/{st['max_steps']}"
        rows.append([
            rec.name, rec.state, step, _fmt(st.get("loss"), ".4f"), _fmt(st.get("tokens_per_s"), ",.0f"),
            _age(now - st["created"] if st.get("created") else None), *(show(rec.value(k)) for k in keys),
        ])
    titles = short_names(keys)
    print_table(["NAME", "STATE", "STEP", "LOSS", "TOK/S", "AGE", *(titles[k].upper() for k in keys)], rows)


@app.command(epilog=examples('recurlab status demo'))
def status(run: str = typer.Argument(..., help="Run name, unique prefix or path."), runs_dir: str = RunsDirOption) -> None:
    """All status fields of a run, its effective state, checkpoints, and the log tail if it died."""
    rd = get_run(run, runs_dir)
    st = rd.read_status()
    state = rd.effective_state(st)
    typer.echo(f"run: {rd.name}  ({rd.path})")
    note = ""
    if state != st.get("state"):
        why = "its pid is gone" if state == "failed" else "no heartbeat for a while"
        note = f"  (status.json says {st.get('state')}; {why})"
    typer.echo(f"effective state: {state}{note}")
    raw = read_json(rd.status_path)
    if not isinstance(raw, dict):
        typer.echo(f"  ({rd.status_path.name} is missing, unreadable or not a JSON object: the state is unknown)")
    elif raw.keys() != st.keys():
        typer.echo(f"  ({rd.status_path.name}: ignored, of the wrong type: {', '.join(k for k in raw if k not in st)})")
    times = ("created", "started", "heartbeat", "ended")
    for key, value in st.items():
        if key in times and isinstance(value, (int, float)):
            value = f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(value))} ({_age(time.time() - value)} ago)"
        typer.echo(f"  {key}: {_fmt(value)}")
    cks = rd.checkpoints()
    typer.echo(f"checkpoints: {', '.join(c.path.name for c in cks) if cks else 'none'}")
    if state in ("failed", "lost"):
        tail = rd.log_tail(20)
        typer.echo(f"last {len(tail)} lines of {rd.log_path}:" if tail else f"{rd.log_path} is empty or missing")
        for line in tail:
            typer.echo(f"  | {line}")


@app.command(epilog=examples('recurlab logs demo -f'))
def logs(
    run: str = typer.Argument(..., help="Run name, unique prefix or path."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the worker ends."),
    runs_dir: str = RunsDirOption,
) -> None:
    """Print the worker log; with -f, follow it until the worker ends."""
    rd = get_run(run, runs_dir)
    offset = 0
    with user_errors():
        while True:
            active = rd.effective_state() in ACTIVE_STATES  # checked before reading: no lost tail
            try:
                with open(rd.log_path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                data = b""
            except OSError as exc:  # a folder in its place, no permission
                fail(f"cannot read {rd.log_path}: {exc.strerror}")
            if data:
                offset += len(data)
                sys.stdout.write(data.decode("utf-8", "replace"))
                sys.stdout.flush()
            if not follow or not active:
                return
            time.sleep(POLL_S)


@app.command(epilog=examples('recurlab stop demo', 'recurlab stop demo --now'))
def stop(
    run: str = typer.Argument(..., help="Run name, unique prefix or path."),
    now: bool = typer.Option(False, "--now", help="Kill the worker at once instead of a graceful stop."),
    runs_dir: str = RunsDirOption,
) -> None:
    """Stop gracefully (finish the step, checkpoint, exit "stopped"); a second stop or --now kills."""
    rd = get_run(run, runs_dir)
    with user_errors():
        out = stop_run(rd, kill=now, by="`recurlab stop --now`" if now else "`recurlab stop`",
                       on_wait=lambda: typer.echo(f"{rd.name}: stop requested; waiting for the worker to checkpoint and exit", err=True))
    if out.killed:
        typer.echo(f"{rd.name}: killed (pid {out.pid}); last checkpoint: {out.checkpoint or 'none'}")
        return
    if out.timed_out:
        typer.echo(f"{rd.name}: still {out.state} after {GRACEFUL_STOP_WAIT_S:.0f} s; run `recurlab stop {rd.name}` again "
                   "to kill it", err=True)
        raise typer.Exit(1)
    typer.echo(f"{rd.name}: {out.state} at step {out.step}; last checkpoint: {out.checkpoint or 'none'}")
    if out.state != "stopped":
        raise typer.Exit(1)


@app.command(epilog=examples('recurlab resume demo', 'recurlab resume demo --device cuda:1'))
def resume(
    run: str = typer.Argument(..., help="Run name, unique prefix or path."),
    runs_dir: str = RunsDirOption,
    device: str = typer.Option("", "--device", help="Device for the resumed worker (default: the run's)."),
    nproc: int = NprocOption,
    nnodes: int = NnodesOption,
    rdzv_endpoint: str = RdzvOption,
) -> None:
    """Continue a stopped or dead run from its latest complete checkpoint, in a detached worker.

    Any number of processes can resume it: checkpoints do not depend on the world size."""
    rd = get_run(run, runs_dir)
    with user_errors():
        check_resumable(rd, device=device)
        launch = None
        if nproc > 1 or nnodes > 1 or rdzv_endpoint:
            launch = _torchrun(rd.path, run_config(rd), True, device, nproc, nnodes, rdzv_endpoint)
        try:
            pid, ck = resume_run(rd, device=device, launch=launch)
        except WorkerStartError as exc:
            fail(str(exc), code=1)
    typer.echo(rd.name)
    typer.echo(
        f"resuming from {ck.path.name if ck else 'the start (no complete checkpoint)'} in worker pid {pid}; "
        f"{_watch_hint(rd, runs_dir)}",
        err=True,
    )


@profiles_app.callback()
def profiles(ctx: typer.Context) -> None:
    """List the profiles with their descriptions."""
    if ctx.invoked_subcommand is not None:
        return
    rows = []
    for pname in profile_names():
        path = profile_path(pname)
        with user_errors():
            cfg = from_dict(load_yaml(path), source=pname)
        where = "built-in" if path.parent.resolve() == BUILTIN_PROFILES.resolve() else str(path)
        rows.append([pname, where, cfg.description])
    print_table(["PROFILE", "FROM", "DESCRIPTION"], rows)


@profiles_app.command("show", epilog=examples('recurlab profiles show tiny', 'recurlab profiles show cpu k=2 train.max_steps=100'))
def profiles_show(
    name: str = typer.Argument(..., help="Profile name or a .yaml path."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value overrides to apply."),
) -> None:
    """Print a profile resolved with overrides, as the run.yaml a run would get."""
    with user_errors():
        cfg = resolve_profile(name, list(overrides or []))
    typer.echo(to_yaml(cfg), nl=False)
