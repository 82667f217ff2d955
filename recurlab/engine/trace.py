"""Latent traces: how each token's state and output distribution evolve over core iterations.

    trace = latent_trace(model, tok, "12+34=", r=16, criterion="kl:5e-4", starts=4, seed=0)
    path = save_trace(run, "add-12-34", trace)          # run.traces_dir / "add-12-34.json"
    json.loads(path.read_text())["tokens"][3]["entropy"]  # no torch needed to read it

The trace runs the model's public steps without a cache over the whole sequence (the prompt,
plus the generated tokens when `generate` is given), so iteration i's coda logits equal
`model(ids, n_no_grad=i, n_grad=0)` from the same start.

Schema (version TRACE_VERSION; every number is a float or int, every list is plain JSON):

    version          int, TRACE_VERSION
    kind             "latent_trace"
    prompt           str
    r                int, iterations traced (iteration numbers are 1..r)
    init_scale, seed the main trajectory's start (init_scale 0: zero start)
    n_prompt         int, how many tokens belong to the prompt (the rest were generated)
    generated_text   str ("" without generation)
    criterion        str | null, e.g. "kl:0.0005"
    tokens           list, one per sequence position:
        id, text                     the token and its string
        rel_change   [r]             ||s_i - s_{i-1}|| / ||s_i|| (s_0 is the start)
        dist_final   [r]             ||s_i - s_r|| / ||s_r||
        entropy      [r]             of the coda's distribution at iteration i (nats)
        kl_prev      [r]             KL(p_i || p_{i-1}); null at iteration 1
        kl_final     [r]             KL(p_i || p_r)
        top          [r][5]          {"id", "text", "p"} the most likely next tokens at iteration i
        exit_iteration  int | null   first iteration the criterion fires (r if never; null without one)
        exit_pdf     [r] | null      models with a learned exit gate (Ouro): the gate's exit
                                     distribution over iterations 1..r (the last takes the remainder)
        pca          [r][2]          the state at iteration i in the trace's 2-D PCA basis
        verdict      {"kind": "settling" | "orbiting" | "drifting", "at": int | null, "period": int | null}
                                     the token's dynamics (recurlab.engine.stability, tolerance verdict_tol)
        radius       float | null    spectral radius of the core step's Jacobian at the final state
                                     (null unless asked for: it costs about 40 JVPs per token)
    lens             the lens the distributions were read with: "coda" (default), "logit", "tuned (...)"
    verdict_tol      the relative-change tolerance of the verdicts
    pca              {"explained_variance_ratio": [2]}: the basis is fitted to all tokens' states
                     of the main trajectory (centred); other starts are projected onto it
    path_independence  null, or:
        starts       int, seeds [starts], init_scale float
        distance     [T][r]  mean pairwise ||s^a_i - s^b_i|| / mean ||s_i|| over the starts
        distance_at_start  [T] the same for the start states
        pca          [starts][T][r][2] each start's trajectory in the main basis
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from recurlab.engine.engine import Engine
from recurlab.engine.exits import check_exit_support, entropy, exit_iterations, exit_pdf, kl_div, log_softmax
from recurlab.engine.lens import get_lens
from recurlab.engine.stability import classify, spectral_radius
from recurlab.errors import InferenceError
from recurlab.options.generate import GenerateOptions, parse_exit
from recurlab.rundir import RunDir, write_new

TRACE_VERSION = 1
TOP = 5
VERDICT_TOL = 1e-2  # a token has settled once its relative change stays below this (the latent exit rule's 1e-2)


def _trajectory(model, e, rope, r: int, scale: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(start (T, d), states (r, T, d)) for one sequence."""
    gen = torch.Generator(device=e.device).manual_seed(seed)
    s = model.init_state(e, scale, gen)
    s0, states = s[0], []
    for i in range(r):
        s = model.core_step(s, e, rope, None, i)
        states.append(s[0])
    return s0, torch.stack(states)


def _norm(x: torch.Tensor) -> torch.Tensor:
    return x.float().norm(dim=-1)


def _rounded(x: torch.Tensor, digits: int = 6) -> list:
    return [float(f"{v:.{digits}g}") for v in x.tolist()]


def latent_trace(model, tokenizer, prompt: str, r: int = 16, *, criterion: str | None = "kl:5e-4",
                 starts: int = 0, init_scale: float | None = None, seed: int = 0,
                 generate: GenerateOptions | None = None, lens=None, radius: bool = False,
                 tol: float = VERDICT_TOL) -> dict:
    if not isinstance(r, int) or r < 1:
        raise InferenceError(f"r must be a whole number >= 1 (iterations of the recurrent core), got {r}")
    if starts < 0 or starts == 1:
        raise InferenceError(f"starts must be 0 (off) or >= 2 random starts to compare, got {starts}")
    if init_scale is not None and not init_scale >= 0:
        raise InferenceError(f"init_scale must be >= 0 (0 = zero start), got {init_scale}")
    crit = parse_exit(criterion)
    check_exit_support(model, crit)
    device = next(model.parameters()).device
    engine = Engine(model, tokenizer, device=str(device))
    ids = engine.encode(prompt)
    generated_text = ""
    if generate is not None:
        room = model.cfg.block_size - len(ids)
        if generate.max_new_tokens > room:
            raise InferenceError(f"the prompt ({len(ids)} tokens) and {generate.max_new_tokens} new tokens would trace "
                                 f"past the model's context of {model.cfg.block_size}; generate at most {room}")
        res = engine.generate(prompt, generate)
        ids, generated_text = ids + res.token_ids, res.text
    scale = model.cfg.init_scale if init_scale is None else init_scale
    x = torch.tensor([ids], device=device)
    T = len(ids)
    with torch.inference_mode():
        rope = model.rope(torch.arange(T, device=device))
        e = model.embed(x, rope)
        s0, states = _trajectory(model, e, rope, r, scale, seed)
    return trace_record(model, tokenizer, ids, e, s0, states, prompt=prompt, n_prompt=len(engine.encode(prompt)),
                        crit=crit, scale=scale, seed=seed, starts=starts, generated_text=generated_text, lens=lens,
                        radius=radius, tol=tol)


def trace_record(model, tokenizer, ids: list[int], e, s0, states, *, prompt: str, n_prompt: int, crit, scale: float,
                 seed: int, starts: int = 0, generated_text: str = "", lens=None, radius: bool = False,
                 tol: float = VERDICT_TOL, extra: dict | None = None) -> dict:
    """The trace dict of a trajectory already run: `states` (r, T, d) after iterations 1..r from
    the start `s0` (T, d), with injected input `e` (1, T, d). Interventions (recurlab.engine.
    interventions) build their changed trajectories' traces here too. `lens` (recurlab.engine.lens)
    reads the distributions (default: the coda lens); each token also gets the verdict on its
    dynamics (recurlab.engine.stability) and, with `radius`, the spectral radius of the core
    step's Jacobian at its final state."""
    lens = get_lens(lens)
    r, T = states.shape[0], states.shape[1]
    device = states.device
    with torch.inference_mode():
        rope = model.rope(torch.arange(T, device=device))
        logits = lens.logits(model, states, rope)  # (r, T, V)
        logp = log_softmax(logits)
        prev = torch.cat([s0[None], states[:-1]])
        rel_change = _norm(states - prev) / _norm(states).clamp_min(1e-12)
        dist_final = _norm(states - states[-1:]) / _norm(states[-1:]).clamp_min(1e-12)
        ent = entropy(logp)
        kl_prev = kl_div(logp[:-1], logp[1:])  # KL(p_{i-1} || p_i), the direction of the `kl` exit
        kl_final = kl_div(logp, logp[-1:].expand_as(logp))
        top_p, top_i = logp.exp().topk(min(TOP, logp.shape[-1]), dim=-1)
        lambdas = model.exit_lambda(states) if model.cfg.exit_gate else None  # (r, T)
        pdf = exit_pdf(lambdas) if lambdas is not None else None
        exits = exit_iterations(crit, list(states), list(logits), r, list(lambdas) if lambdas is not None else None) \
            if crit is not None else [None] * T
        verdicts = classify(states, top_i[..., 0], tol)

        flat = states.reshape(-1, states.shape[-1]).float()
        mean = flat.mean(0, keepdim=True)
        _, sv, vh = torch.linalg.svd(flat - mean, full_matrices=False)
        basis = vh[:2].T  # (d, 2)
        total = float((sv ** 2).sum())
        explained = [float((sv[k] ** 2) / total) if total > 0 else 0.0 for k in range(min(2, sv.numel()))]

        def project(st: torch.Tensor) -> torch.Tensor:  # (r, T, d) -> (T, r, 2)
            return ((st.float() - mean) @ basis).transpose(0, 1)

        proj = project(states)
        path = _path_independence(model, e, rope, r, scale, seed, starts, project) if starts else None
    radii = spectral_radius(model, states[-1].clone(), e[0].clone(), model.rope(torch.arange(T, device=device)), r).tolist() \
        if radius and model.cfg.is_recurrent else None

    tokens = []
    for t in range(T):
        top = [[{"id": int(i), "text": tokenizer.token_str(int(i)), "p": float(f"{p:.6g}")}
                for p, i in zip(top_p[it, t].tolist(), top_i[it, t].tolist())] for it in range(r)]
        tokens.append({
            "id": ids[t], "text": tokenizer.token_str(ids[t]),
            "rel_change": _rounded(rel_change[:, t]), "dist_final": _rounded(dist_final[:, t]),
            "entropy": _rounded(ent[:, t]), "kl_prev": [None] + _rounded(kl_prev[:, t]),
            "kl_final": _rounded(kl_final[:, t]), "top": top, "exit_iteration": exits[t],
            "pca": [_rounded(p) for p in proj[t]],
            "exit_pdf": _rounded(pdf[:, t]) if pdf is not None else None,
            "verdict": verdicts[t], "radius": float(f"{radii[t]:.6g}") if radii is not None else None,
        })
    return {
        "version": TRACE_VERSION, "kind": "latent_trace", "prompt": prompt, "r": r, "init_scale": scale,
        "seed": seed, "n_prompt": n_prompt, "generated_text": generated_text,
        "criterion": crit.spec() if crit is not None else None, "tokens": tokens,
        "pca": {"explained_variance_ratio": explained}, "path_independence": path,
        "lens": lens.describe(), "verdict_tol": tol, **(extra or {}),
    }


def _path_independence(model, e, rope, r, scale, seed, starts, project) -> dict:
    # random starts need a nonzero scale even when the main trajectory starts at zero
    rand_scale = scale if scale > 0 else (model.cfg.init_scale or 1.0)
    seeds = [seed + 1 + k for k in range(starts)]
    runs = [_trajectory(model, e, rope, r, rand_scale, sd) for sd in seeds]
    inits = torch.stack([s0 for s0, _ in runs])  # (K, T, d)
    trajs = torch.stack([st for _, st in runs])  # (K, r, T, d)

    def spread(x: torch.Tensor) -> torch.Tensor:  # (K, ..., d) -> mean pairwise relative distance
        a, b = torch.triu_indices(x.shape[0], x.shape[0], 1)
        dist = _norm(x[a] - x[b]).mean(0)
        return dist / _norm(x).mean(0).clamp_min(1e-12)

    return {
        "starts": starts, "seeds": seeds, "init_scale": rand_scale,
        "distance": [_rounded(row) for row in spread(trajs).T],  # (T, r)
        "distance_at_start": _rounded(spread(inits)),
        "pca": [[[_rounded(p) for p in tok] for tok in project(st)] for st in trajs],
    }


def save_trace(run: RunDir, name: str, trace: dict) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name or ""):
        raise InferenceError(f"trace name {name!r} must be letters, digits, '.', '_' or '-' (at most 100)")
    # a name used before gets -2, -3, ...: a trace is a result, never replaced
    return write_new(run.traces_dir, name, {"json": json.dumps(trace, indent=1) + "\n"})[0]
