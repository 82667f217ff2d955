"""A verdict on each token's dynamics, and the local contraction of the core step.

    verdicts = classify(states, tops, tol=1e-2)       # states (r, T, d), tops (r, T) top-1 ids
    verdicts[3] -> {"kind": "settling", "at": 6, "period": None}
    rho = spectral_radius(model, s_final, e, rope)     # (T,) one radius per token
    summary = stability_summary(opened, levels=[1, 2, ..., 8], per_level=20, r=16)

Verdicts (from the trajectory alone):

    settling   the relative change ||s_i - s_{i-1}|| / ||s_i|| falls below `tol` at iteration `at`
               and stays below it to the last iteration
    orbiting   not settling, but over the second half of the iterations the state returns to
               itself with a period p >= 2 (||s_i - s_{i-p}|| / ||s_i|| < tol throughout), or the
               top-1 token repeats a cycle of p >= 2 steps with at least two distinct tokens
    drifting   neither

The radius is the spectral radius of the core step's Jacobian with respect to the token's own
state, d s'_t / d s_t at the final state (the other tokens and the injected input held fixed;
the step is causal, so the whole step's Jacobian is block-triangular and its eigenvalues are
those of these blocks). It is found without building the Jacobian: power iteration on
Jacobian-vector products (torch.func.jvp), every iterate kept and orthonormalized (the Arnoldi
form of power iteration), the radius being the largest magnitude of the Ritz values. Below 1 the
step contracts around the token's final state; above 1 it expands along some direction.
"""

from __future__ import annotations

import copy
import statistics

import torch
from torch import Tensor

from recurlab.data import TaskData
from recurlab.errors import InferenceError
from recurlab.heldout import evaluate_heldout

KRYLOV = 40  # Arnoldi steps (JVPs per token); the full width for models narrower than this


def classify(states: Tensor, tops: Tensor, tol: float = 1e-2) -> list[dict]:
    """One verdict per token from its states (r, T, d) after iterations 1..r and top-1 ids (r, T)."""
    r, T = states.shape[0], states.shape[1]
    sf = states.float()
    norms = sf.norm(dim=-1).clamp_min(1e-12)  # (r, T)
    rel = torch.ones(r, T)
    if r > 1:
        rel[1:] = ((sf[1:] - sf[:-1]).norm(dim=-1) / norms[1:]).cpu()
    tail = range(r // 2, r)  # the second half: where a settled pattern shows
    out = []
    for t in range(T):
        below = (rel[:, t] < tol).tolist()
        at = None
        for i in range(r - 1, -1, -1):  # the first iteration from which every later one is below tol
            if not below[i]:
                break
            at = i + 1
        if at is not None and at < r:  # one quiet last step alone is not a settled state
            out.append({"kind": "settling", "at": at, "period": None})
            continue
        period = _state_period(sf[:, t], norms[:, t], tail, tol) or _token_period(tops[:, t].tolist(), tail)
        out.append({"kind": "orbiting", "at": None, "period": period} if period else {"kind": "drifting", "at": None, "period": None})
    return out


def _state_period(s: Tensor, norms: Tensor, tail: range, tol: float) -> int | None:
    n = len(tail)
    for p in range(2, n // 2 + 1):
        idx = [i for i in tail if i - p >= 0]
        if len(idx) < p + 1:
            break
        d = torch.stack([(s[i] - s[i - p]).norm() / norms[i] for i in idx])
        if bool((d < tol).all()):
            return p
    return None


def _token_period(tops: list[int], tail: range) -> int | None:
    seq = [tops[i] for i in tail]
    for p in range(2, len(seq) // 2 + 1):
        if len(set(seq)) > 1 and all(seq[k] == seq[k - p] for k in range(p, len(seq))):
            return p
    return None


def _jvp_fn(model, e: Tensor, rope, iteration: int):
    """The core step as a function of a batch of states (B, T, d) with e, rope fixed."""
    def f(s: Tensor) -> Tensor:
        return model.core_step(s, e.expand(s.shape[0], -1, -1), rope, None, iteration)
    return f


def spectral_radius(model, s: Tensor, e: Tensor, rope, iteration: int = 0, tokens: list[int] | None = None,
                    steps: int | None = None, seed: int = 0, chunk: int = 64) -> Tensor:
    """(len(tokens),) spectral radius of d core_step(s)_t / d s_t for each token t (all by default).

    s and e are one sequence's (T, d) final state and injected input. Each token is one row of a
    batch whose tangent is nonzero only at that token; `steps` JVPs per token (default: KRYLOV,
    or the width if smaller, which makes the Krylov space the whole space)."""
    from torch.func import jvp
    from torch.nn.attention import SDPBackend, sdpa_kernel  # forward-mode AD needs the math attention kernel

    if not model.cfg.is_recurrent:
        raise InferenceError("this model has no recurrence, so its core step has no state Jacobian")
    T, d = s.shape
    tokens = list(range(T)) if tokens is None else list(tokens)
    m = min(d, steps or KRYLOV)
    s = s.detach().clone()
    e = e.detach().clone()[None]
    out = []
    for c in range(0, len(tokens), chunk):
        toks = tokens[c:c + chunk]
        B = len(toks)
        f = _jvp_fn(model, e, rope, iteration)
        primal = s[None].expand(B, T, d).contiguous()
        gen = torch.Generator().manual_seed(seed)
        q = torch.randn(B, d, generator=gen, dtype=torch.float64)
        Q = torch.zeros(B, m + 1, d, dtype=torch.float64)
        H = torch.zeros(B, m + 1, m, dtype=torch.float64)
        Q[:, 0] = q / q.norm(dim=-1, keepdim=True)
        rows = torch.arange(B)
        width = m
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
            for k in range(m):
                tangent = torch.zeros(B, T, d, dtype=s.dtype, device=s.device)
                tangent[rows, toks] = Q[:, k].to(device=s.device, dtype=s.dtype)
                _, jv = jvp(f, (primal,), (tangent,))
                w = jv[rows, toks].double().cpu()
                for _ in range(2):  # Gram-Schmidt twice keeps the basis orthonormal in float32 JVPs
                    coef = torch.einsum("bkd,bd->bk", Q[:, :k + 1], w)
                    H[:, :k + 1, k] += coef
                    w = w - torch.einsum("bk,bkd->bd", coef, Q[:, :k + 1])
                h = w.norm(dim=-1)
                H[:, k + 1, k] = h
                if bool((h < 1e-10).all()):  # an invariant subspace for every token: exact already
                    width = k + 1
                    break
                Q[:, k + 1] = w / h.clamp_min(1e-300)[:, None]
        ritz = torch.linalg.eigvals(H[:, :width, :width])
        out.append(ritz.abs().max(dim=-1).values.float())
    return torch.cat(out)


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def summarize(verdicts: list[dict], radii: list[float]) -> dict:
    n = len(verdicts)
    kinds = [v["kind"] for v in verdicts]
    return {
        "tokens": n,
        "settling": kinds.count("settling") / n if n else None,
        "orbiting": kinds.count("orbiting") / n if n else None,
        "drifting": kinds.count("drifting") / n if n else None,
        "radius_median": statistics.median(radii) if radii else None,
        "radius_p90": _percentile(radii, 0.9),
    }


def sequence_dynamics(model, ids: list[int], r: int, *, positions: list[int] | None = None, tol: float = 1e-2,
                      init_scale: float | None = None, seed: int = 0, radius: bool = True) -> tuple[list[dict], list[float]]:
    """Verdicts and radii of the given positions (all by default) of one sequence traced to r."""
    device = next(model.parameters()).device
    x = torch.tensor([ids], device=device)
    with torch.inference_mode():
        rope = model.rope(torch.arange(len(ids), device=device))
        e = model.embed(x, rope)
        s = model.init_state(e, init_scale, torch.Generator(device=device).manual_seed(seed))
        states = []
        for i in range(r):
            s = model.core_step(s, e, rope, None, i)
            states.append(s[0])
        states = torch.stack(states)
        tops = torch.stack([model.decode(st[None], rope)[0].argmax(-1) for st in states])
    positions = list(range(len(ids))) if positions is None else positions
    verdicts = classify(states[:, positions], tops[:, positions], tol)
    radii = spectral_radius(model, states[-1].clone(), e[0].clone(), model.rope(torch.arange(len(ids), device=device)),
                            r, positions).tolist() if radius else []
    return verdicts, radii


def stability_summary(opened, *, levels: list[int] | None = None, per_level: int = 20, r: int | None = None,
                      tol: float = 1e-2, prompts: list[str] | None = None, seed: int = 0, on_prompt=None) -> dict:
    """Run-level summary over held-out prompts: per level (task runs) the fraction of answer
    positions settling / orbiting / drifting, the median and 90th percentile of their radius, and
    the exact-match accuracy at the same r over the level's whole held-out set; for text (a list
    of `prompts`) one group over all positions. `on_prompt(done, total)` reports progress."""
    model, cfg = opened.model, opened.cfg
    r = r or 2 * opened.r_mean
    if per_level < 1:
        raise InferenceError(f"--per-level must be >= 1 prompt, got {per_level}")
    groups = []
    if prompts is None:
        if opened.run is None or cfg.data.source != "task":
            raise InferenceError("--stability on a text model or a model folder needs prompts: give --data FILE "
                                 "(one held-out prompt per line)")
        data, accuracy = _task_levels(opened, levels, r)
        items = [(d, [(ex.prompt, ex.answer) for ex in data.heldout(d)[:per_level]]) for d in data.eval_levels]
    else:
        items, accuracy = [("text", [(p, "") for p in prompts])], {}
    total = sum(len(exs) for _, exs in items)
    done, pooled_v, pooled_r = 0, [], []
    for group, exs in items:
        verdicts, radii = [], []
        for prompt, answer in exs:
            n_prompt = len(opened.engine.encode(prompt))
            ids = opened.engine.encode(prompt + answer)
            # the positions that predict the answer: the last prompt token and every answer token but the last
            positions = list(range(n_prompt - 1, len(ids) - 1)) if answer else list(range(len(ids)))
            v, rad = sequence_dynamics(model, ids, r, positions=positions, tol=tol, seed=seed)
            verdicts += v
            radii += rad
            done += 1
            if on_prompt is not None:
                on_prompt(done, total)
        pooled_v += verdicts
        pooled_r += radii
        groups.append({"level": group, "prompts": len(exs), "accuracy": accuracy.get(group), **summarize(verdicts, radii)})
    return {"kind": "stability", "version": 1, "r": r, "tol": tol, "seed": seed, "per_level": per_level,
            "source": opened.source, "groups": groups,
            "overall": summarize(pooled_v, pooled_r)}


def _task_levels(opened, levels: list[int] | None, r: int):
    cfg = copy.deepcopy(opened.cfg)  # the opened model's config is shared (a TUI keeps it)
    if levels:
        cfg.data.difficulties = list(levels)
    data = TaskData(cfg)
    for d in data.eval_levels:
        longest = max(len(ex.prompt) + len(ex.answer) + 1 for ex in data.heldout(d))
        if longest > cfg.model.block_size:
            raise InferenceError(f"--levels: level {d} needs {longest} tokens but the model's block_size is "
                                 f"{cfg.model.block_size}; choose lower levels")
    row = evaluate_heldout(opened.model, data, [r], opened.device)[0]
    return data, {d: row[f"acc@{d}"] for d in data.eval_levels}
