"""`recurlab generate` and `recurlab inspect`: the inference engine from the shell.

    recurlab generate RUN --prompt "12345678+87654321=" --r 16 --exit kl:5e-4
    recurlab generate RUN --prompt "12+34=" --speculative draft=4,lookahead=8 --json
    recurlab generate RUN --prompts-file prompts.txt --batch 32 --r 16 --exit kl:5e-4   # depth batching
    recurlab generate RUN --prompt "12+34=" --r 32 --sampler parallel:inner=4,headway=1,freeze=latent:0.03
    recurlab inspect RUN --prompt "12+34=" --r 16 --starts 4
    recurlab inspect RUN --prompt "12+34=" --lens tuned --patch-from "56+78=" --at 3,4   (more in recurlab.cli.inside)
    recurlab generate --model models/huginn-0125 --device cuda --prompt "<|begin_text|>Hi" --r 32

torch loads only inside the commands.
"""

from __future__ import annotations

import json
import time
from typing import Optional

import typer

from recurlab.cli.app import app, examples
from recurlab.cli.common import RunsDirOption, get_run, user_errors
from recurlab.errors import InferenceError
from recurlab.options.generate import DEVICE, DEVICE_HELP, EXIT_EXAMPLE, GenerateOptions, parse_r
from recurlab.options.parallel import SPEC_HELP
from recurlab.rundir import RunDir


RunArgument = typer.Argument(None, help="Run name, unique prefix, or run directory (or use --model).")
ModelOption = typer.Option(None, "--model", help="A Hugging Face folder (Huginn, Ouro or retrofitted recurrence) instead of a run.")


def _open(run: str | None, model_path: str | None, runs_dir: str, step: int | None, device: str):
    """The OpenedModel of a run (by name, prefix or path) or of a model folder (--model)."""
    if bool(run) == bool(model_path):
        raise InferenceError("give either a RUN or --model PATH (a Hugging Face model folder), not both or neither")
    from recurlab.engine import open_model  # torch and safetensors: loaded only when this runs

    return open_model(model_path or get_run(run, runs_dir), step=step, device=device)


def _fmt_bytes(n: float) -> str:
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            break
    return f"{n:.1f} {unit}"


def _read_prompts(path: str) -> list[str]:
    """One prompt per line of a text file; blank lines are skipped."""
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise InferenceError(f"--prompts-file {path}: no such file; give a text file with one prompt per line")
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise InferenceError(f"--prompts-file {path} is not UTF-8 text; give a text file with one prompt per line") from None
    prompts = [line for line in lines if line.strip()]
    if not prompts:
        raise InferenceError(f"--prompts-file {path} holds no prompt; write one prompt per line")
    return prompts


@app.command(epilog=examples("recurlab generate demo --prompt '12+34=' --r 8 --temperature 0", "recurlab generate demo --prompt '12+34=' --r 32 --exit kl:5e-4 --json"))
def generate(
    run: Optional[str] = RunArgument,
    prompt: Optional[list[str]] = typer.Option(None, "--prompt", "-p", help="Prompt text; repeat for several."),
    prompts_file: Optional[str] = typer.Option(None, "--prompts-file", help="A text file with one prompt per line (blank lines skipped), after any --prompt."),
    batch: Optional[int] = typer.Option(None, "--batch", help="Prompts decoded together (default: all)."),
    batching: str = typer.Option("auto", "--batching", help="Several prompts: depth (each token exits at its own iteration; a finished prompt frees its row for the next), padded (left-padded batches that step together), or auto (depth under --exit, padded at fixed r)."),
    r: str = typer.Option("16", "--r", help="Iterations of the recurrent core per token."),
    exit: Optional[str] = typer.Option(None, "--exit", help=f"Adaptive exit, e.g. {EXIT_EXAMPLE} (add ,min=N,max=N,every=N)."),
    kv_budget: Optional[int] = typer.Option(None, "--kv-budget", help="Cache slots per token (iteration i uses slot i mod n)."),
    cache_lookup: str = typer.Option("latest", "--cache-lookup", help="How later tokens read an exited token: latest (its last entry, the reference's latest-m4) or existing (only entries of the current iteration, the reference's default)."),
    continuous: bool = typer.Option(False, "--continuous", help="Warm-start each token from the previous token's final state."),
    speculative: Optional[str] = typer.Option(None, "--speculative", help="Self-speculative decoding, e.g. draft=4,lookahead=8."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help=f"sequential (default) or {SPEC_HELP}; freeze rules latent:T, stable:N, iterations[:N]."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 is greedy."),
    top_k: int = typer.Option(0, "--top-k", help="0 is off."),
    top_p: float = typer.Option(1.0, "--top-p", help="1 is off."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens"),
    init_scale: Optional[float] = typer.Option(None, "--init-scale", help="Std of the random latent start (0: zero start, deterministic). Default: the run's."),
    seed: int = typer.Option(0, "--seed"),
    step: Optional[int] = typer.Option(None, "--step", help="Checkpoint step (default: the latest)."),
    device: str = typer.Option(DEVICE, "--device", help=DEVICE_HELP),
    runs_dir: str = RunsDirOption,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of streaming text."),
    compile: bool = typer.Option(False, "--compile", help="Run each decode step's core iterations as one compiled graph (torch.compile; needs a C++ compiler on CPU): the first token waits seconds for the compile, the rest decode faster."),
    save_wavefront: bool = typer.Option(False, "--save-wavefront", help="Parallel sampler: write each row's wavefront to the run's wavefronts/ folder (./wavefronts/ for --model), for the TUI's replay."),
    model_path: Optional[str] = ModelOption,
):
    """Generate text from a run's checkpoint (or a model folder), streaming it, then print a summary."""
    with user_errors():
        r = parse_r(r)  # a string option, so that a bad value is one error line, not a usage box
        prompt = list(prompt or []) + (_read_prompts(prompts_file) if prompts_file else [])
        if not prompt:
            raise InferenceError("no prompt given: pass --prompt TEXT or --prompts-file FILE")
        opts = GenerateOptions(
            r=r, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
            init_scale=init_scale, seed=seed, exit=exit, kv_budget=kv_budget, continuous=continuous,
            speculative=speculative, cache_lookup=cache_lookup, sampler=sampler, compile=compile,
            batching=batching, batch=batch,
        ).validate()
        if save_wavefront and opts.sampler is None:
            raise InferenceError("--save-wavefront needs the parallel sampler: add --sampler parallel")
        opened = _open(run, model_path, runs_dir, step, device)
        stream = opened.engine.stream(prompt, opts)
        single = len(prompt) == 1
        if not as_json and single:
            typer.echo(prompt[0], nl=False)
        for ev in stream:
            if not as_json and single:
                typer.echo(ev.text, nl=False)
        res = stream.result
        saved = []
        if save_wavefront:
            # torch and safetensors: loaded only when this runs
            from recurlab.engine.wavefronts import save_wavefront as save, wavefront_record

            folder = opened.run.path if opened.run is not None else "."
            saved = [str(save(folder, wavefront_record(res, opened.tokenizer, b))) for b in range(len(prompt))]
        if as_json:
            out = {**opened.source, "text": res.text if single else None, **res.to_dict(), "wavefront_files": saved}
            typer.echo(json.dumps(out))
            return
        if single:
            typer.echo("")
        else:
            for p, text in zip(prompt, res.texts):
                typer.echo(f"{p}{text}")
        parts = [
            f"{res.n_tokens} tokens in {res.seconds:.2f}s ({res.tokens_per_s:.1f} tokens/s"
            + (f"; {res.compile_seconds:.1f}s of it compiling the decode step)" if res.compile_seconds else ")"),
            f"mean iterations per token {res.mean_iterations:.2f} (r={r})",
            f"KV cache {_fmt_bytes(res.cache_bytes)}",
        ]
        if res.speculative:
            sp = res.speculative
            parts.append(f"speculative acceptance {res.acceptance_rate:.0%} over {sp['rounds']} rounds, "
                         f"{sp['serial_iteration_speedup']:.2f}x fewer sequential core iterations")
        if res.parallel:
            parts.append(_parallel_summary(res.parallel))
        if res.depth:
            dp = res.depth
            parts.append(f"depth batching: {dp['rows']} rows, {dp['core_passes']} core passes, "
                         f"{dp['rows_per_pass']:.1f} tokens per pass")
        typer.echo(typer.style(" | ".join(parts), dim=True), err=True)
        if res.parallel:
            for b, row in enumerate(res.parallel["rows"]):
                label = f"row {b} " if not single else ""
                typer.echo(typer.style(f"{label}outer step at freeze per token: {' '.join(map(str, row['frozen_at']))}",
                                       dim=True), err=True)
        for path in saved:
            typer.echo(f"wavefront written to {path}", err=True)


def _parallel_summary(p: dict) -> str:
    return (f"parallel: {p['outer_steps']} outer steps, {p['core_passes']} core passes ({p['prefill_core_passes']} prefill), "
            f"{p['passes_per_token']:.2f} sequential core passes per token (sequential: {p['r']}, "
            f"{p['speedup_in_passes']:.2f}x fewer)")


def _cell_color(kl_final: float) -> str:
    """Green once the distribution matches the final one, red while it is far away."""
    if kl_final < 1e-4:
        return typer.colors.GREEN
    if kl_final < 1e-2:
        return typer.colors.YELLOW
    if kl_final < 1.0:
        return typer.colors.BRIGHT_RED
    return typer.colors.RED


def _table(trace: dict) -> list[str]:
    r = trace["r"]
    toks = trace["tokens"]
    width = max(3, max(len(repr(t["text"])) for t in toks))
    head = " " * (width + 2) + "".join(f"{i:>4}" for i in range(1, r + 1)) + "  exit  Δ(last)"
    lines = [head]
    for t in toks:
        cells = []
        for i in range(r):
            top = t["top"][i][0]["text"]
            shown = (top if len(top) == 1 and top.isprintable() and top != " " else "·")[:1]
            cells.append(typer.style(f"{shown:>4}", fg=_cell_color(t["kl_final"][i])))
        ex = t["exit_iteration"]
        label = repr(t["text"]).ljust(width)
        lines.append(f"{label}  " + "".join(cells) + f"  {str(ex if ex is not None else '-'):>4}  {t['rel_change'][-1]:.1e}")
    return lines


@app.command(epilog=examples("recurlab inspect demo --prompt '12+34=' --r 8", "recurlab inspect cpu-demo --prompt '3102.0213.2310=' --r 16 --starts 4",
                             "recurlab inspect cpu-demo -p '3102.0213.2310=' --generate 4 --causal-trace --corrupt '0213.0213.2310='",
                             "recurlab inspect cpu-demo -p '3102.0213.2310=' --generate 4 --patch-from '0213.0213.2310=' --at 15,4",
                             "recurlab inspect cpu-demo --stability --levels 1-8 --r 16"))
def inspect(
    run: Optional[str] = RunArgument,
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help="The prompt to trace (not needed with --stability)."),
    r: str = typer.Option("16", "--r", help="Iterations to trace."),
    exit: Optional[str] = typer.Option("kl:5e-4", "--exit", help="Criterion for the exit iteration column."),
    starts: int = typer.Option(0, "--starts", help="Random starts for path independence (0: off, else >= 2)."),
    generate_tokens: int = typer.Option(0, "--generate", help="Greedily generate this many tokens first and trace them too."),
    init_scale: Optional[float] = typer.Option(None, "--init-scale"),
    seed: int = typer.Option(0, "--seed"),
    name: Optional[str] = typer.Option(None, "--name", help="Trace file name (default: inspect-<time>)."),
    step: Optional[int] = typer.Option(None, "--step"),
    device: str = typer.Option(DEVICE, "--device", help=DEVICE_HELP),
    runs_dir: str = RunsDirOption,
    model_path: Optional[str] = ModelOption,
    lens: str = typer.Option("coda", "--lens", help="How each iteration's state is read: coda, logit or tuned (`recurlab lens train` first)."),
    radius: bool = typer.Option(False, "--radius", help="Also the spectral radius of the core step's Jacobian at each token's final state (about 40 JVPs per token)."),
    tol: float = typer.Option(1e-2, "--tol", help="Relative change under which a token counts as settled."),
    patch_from: Optional[str] = typer.Option(None, "--patch-from", help="Patch from this prompt's state of the same position (with --at)."),
    at: Optional[str] = typer.Option(None, "--at", help="TOKEN,ITER: the position and the iteration to patch."),
    target: Optional[str] = typer.Option(None, "--target", help="Without --generate: the token whose log-probability to measure (default: the top prediction)."),
    causal_trace: bool = typer.Option(False, "--causal-trace", help="Patch every (token, iteration) of --corrupt from the prompt, one at a time."),
    corrupt: Optional[str] = typer.Option(None, "--corrupt", help="The corrupted prompt of --causal-trace (as many tokens as --prompt)."),
    inject_off: Optional[int] = typer.Option(None, "--inject-off", help="From this iteration on, inject zeros (or --inject-from's embedding)."),
    inject_from: Optional[str] = typer.Option(None, "--inject-from", help="With --inject-off: inject this prompt's embedding instead of zeros."),
    noise: Optional[str] = typer.Option(None, "--noise", help="SIGMA@ITER: Gaussian noise of relative size SIGMA added at iteration ITER."),
    stability: bool = typer.Option(False, "--stability", help="Run-level summary over held-out prompts: settling fraction and radius per level, with accuracy."),
    levels: Optional[str] = typer.Option(None, "--levels", help="--stability: task levels, e.g. 1-8 (default: the run's)."),
    per_level: int = typer.Option(20, "--per-level", help="--stability: held-out prompts per level (or lines of --data)."),
    data: Optional[str] = typer.Option(None, "--data", help="--stability on a text model or model folder: a file of prompts, one per line."),
):
    """Print a token x iteration convergence table and save the latent trace.

    Each cell is the argmax token after that iteration, coloured by its KL to the final iteration. The trace goes to the run's traces/ folder (./traces/ for --model)."""
    with user_errors():
        from recurlab.cli import inside  # not at start-up: every command imports this module
        from recurlab.engine import latent_trace, save_trace  # torch and safetensors: loaded only when this runs

        r = parse_r(r)

        if generate_tokens < 0:
            raise InferenceError(f"--generate must be >= 0 tokens, got {generate_tokens}")
        kind = inside.chosen(patch_from, at, causal_trace, corrupt, inject_off, noise)
        if stability and kind:
            raise InferenceError("--stability is a run-level summary: give it without an intervention")
        if not stability and not prompt:
            raise InferenceError("give --prompt TEXT to trace (or --stability for the run-level summary)")
        if not tol > 0:
            raise InferenceError(f"--tol must be > 0 (a relative change), got {tol}")
        level_list = inside.parse_levels(levels)
        if per_level < 1:
            raise InferenceError(f"--per-level must be >= 1 prompt, got {per_level}")
        opened = _open(run, model_path, runs_dir, step, device)
        if stability:
            inside.run_stability(opened, levels=level_list, per_level=per_level, r=r, data=data, tol=tol, name=name, seed=seed)
            return
        lens_obj = inside.lens_for(opened, lens)
        if kind:
            inside.run_intervention(kind, opened, prompt=prompt, r=r, answer_tokens=generate_tokens, init_scale=init_scale,
                                    seed=seed, lens=lens_obj, name=name, target=target, patch_from=patch_from, at=at,
                                    corrupt=corrupt, inject_off=inject_off, inject_from=inject_from, noise=noise)
            return
        gen = GenerateOptions(r=r, max_new_tokens=generate_tokens, init_scale=init_scale, seed=seed) if generate_tokens else None
        trace = latent_trace(opened.model, opened.tokenizer, prompt, r=r, criterion=exit, starts=starts, init_scale=init_scale,
                             seed=seed, generate=gen, lens=lens_obj, radius=radius, tol=tol)
        name = name or f"inspect-{time.strftime('%Y%m%d-%H%M%S')}"
        # a model folder is not a run directory: its traces go to ./traces/
        path = save_trace(opened.run or RunDir("."), name, trace)
        for line in _table(trace):
            typer.echo(line)
        exits = [t["exit_iteration"] for t in trace["tokens"] if t["exit_iteration"] is not None]
        if exits:
            typer.echo(f"mean exit iteration under {trace['criterion']}: {sum(exits) / len(exits):.2f} of {r}")
        pi = trace["path_independence"]
        if pi:
            final = [row[-1] for row in pi["distance"]]
            start = pi["distance_at_start"]
            typer.echo(
                f"path independence ({pi['starts']} starts): mean relative distance {sum(start) / len(start):.3g} "
                f"at the start -> {sum(final) / len(final):.3g} at iteration {r}"
            )
        inside.print_dynamics(trace)
        typer.echo(f"trace written to {path}")
