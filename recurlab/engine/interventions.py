"""Interventions at iteration i: the causal side of the latent trace.

    seq = prepare(engine, "0123.1032=", answer_tokens=4, r=16)       # prompt + its greedy answer
    src = with_prompt(engine, "3210.0123=", seq)                      # another prompt, the same answer after it
    rec = patch(model, tok, seq, src, token=5, iteration=3, r=16)     # s_3[5] := the source's s_3[5]
    rec["delta"], rec["top_after"], rec["trace"]                      # change in log p(answer), the new grid
    ct = causal_trace(model, tok, seq, src, r=16)                     # every (token, iteration) patched
    ct["logp"][t][i - 1] == patch(model, tok, src, seq, t, i, r)["logp_after"]
    off = inject_off(model, tok, seq, iteration=5, r=16)              # zeros injected from iteration 5 on
    nz = add_noise(model, tok, seq, sigma=0.5, iteration=4, r=16)      # and when each token recovers
    path = save_intervention(record_root(opened), rec, name=None)     # interventions/NAME.json

Everything runs the model's public steps without a cache over the whole sequence, as the latent
trace does; iteration i is the state after i core steps (1..r). A changed state at iteration i
changes the later iterations of its own token and, through attention, of the tokens after it.

The answer: when the sequence holds answer tokens after the prompt, its log-probability is the
sum of log p(answer token) at the positions that predict them (teacher-forced); otherwise it is
the log-probability of one target token (given, or the clean run's top prediction) at the last
position. Patching takes the state of the same position from the source sequence, so both
sequences run the same answer tokens after their prompts.

The causal trace follows ROME's causal tracing over iterations: the base run is the corrupted
prompt, and each cell restores one (token, iteration) state from the clean prompt; a cell's
value is the clean answer's log-probability after that single patch, and its recovery
(logp_cell - logp_corrupt) / (logp_clean - logp_corrupt) says how much of the answer that state
carries.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from recurlab.options.generate import GenerateOptions, parse_exit
from recurlab.engine.records import default_name, write_json
from recurlab.engine.trace import trace_record
from recurlab.errors import InferenceError

VERSION = 1
RECOVER_TOL = 1e-2  # relative distance to the clean state under which a noised state has recovered


@dataclass
class Sequence:
    prompt: str
    ids: list[int]
    n_prompt: int  # tokens of the prompt; the rest is the answer
    target: int | None = None  # the measured token when there are no answer tokens (None: the clean top-1)

    @property
    def answer(self) -> list[int]:
        return self.ids[self.n_prompt:]


def prepare(engine, prompt: str, answer_tokens: int = 0, r: int = 16, init_scale: float | None = None, seed: int = 0,
            target: str | None = None) -> Sequence:
    """The prompt's ids and, with answer_tokens > 0, its greedy answer at r."""
    ids = engine.encode(prompt)
    n_prompt = len(ids)
    if answer_tokens:
        res = engine.generate(prompt, GenerateOptions(r=r, max_new_tokens=answer_tokens, init_scale=init_scale, seed=seed))
        ids = ids + [i for i in res.token_ids if i != engine.tokenizer.eos_id]
    tid = None
    if target is not None:
        enc = engine.tokenizer.encode(target)
        if len(enc) != 1:
            raise InferenceError(f"--target {target!r} is {len(enc)} tokens; give one token of the vocabulary")
        tid = enc[0]
    return Sequence(prompt, ids, n_prompt, tid)


def with_prompt(engine, prompt: str, like: Sequence) -> Sequence:
    """Another prompt followed by `like`'s answer tokens (positions line up when the prompts do)."""
    ids = engine.encode(prompt)
    return Sequence(prompt, ids + like.answer, len(ids), like.target)


def _device(model):
    return next(model.parameters()).device


@torch.inference_mode()
def _start(model, ids: list[int], init_scale: float | None, seed: int):
    device = _device(model)
    x = torch.tensor([ids], device=device)
    rope = model.rope(torch.arange(len(ids), device=device))
    e = model.embed(x, rope)
    gen = torch.Generator(device=device).manual_seed(seed)
    return rope, e, model.init_state(e, init_scale, gen)


@torch.inference_mode()
def _run(model, s: Tensor, e: Tensor, rope, first: int, r: int, e_from: int | None = None, e_alt: Tensor | None = None) -> list[Tensor]:
    """States after iterations first+1..r, from `s` (B, T, d) after iteration `first`; core steps
    from iteration `e_from` on get `e_alt` as their injected input."""
    out = []
    for i in range(first, r):
        inject = e_alt if e_from is not None and i + 1 >= e_from else e
        s = model.core_step(s, inject, rope, None, i)
        out.append(s)
    return out


def trajectory(model, seq: Sequence, r: int, init_scale: float | None = None, seed: int = 0):
    """(rope, e (1, T, d), s0 (T, d), states (r, T, d)) of the unchanged run."""
    rope, e, s0 = _start(model, seq.ids, init_scale, seed)
    states = _run(model, s0, e, rope, 0, r)
    return rope, e, s0[0], torch.stack([s[0] for s in states])


def _readout(seq: Sequence, clean_final_logits: Tensor) -> tuple[list[int], list[int]]:
    """(positions, target ids) whose log-probabilities sum to the answer's."""
    if seq.answer:
        return list(range(seq.n_prompt - 1, len(seq.ids) - 1)), list(seq.answer)
    target = seq.target if seq.target is not None else int(clean_final_logits[-1].argmax())
    return [len(seq.ids) - 1], [target]


@torch.inference_mode()
def _answer_logp(logits: Tensor, positions: list[int], targets: list[int]) -> Tensor:
    """(B,) summed log p(target) at the positions, from final logits (B, T, V)."""
    logp = logits.float().log_softmax(-1)
    pos = torch.tensor(positions, device=logits.device)
    tgt = torch.tensor(targets, device=logits.device)
    return logp[:, pos, tgt].sum(-1)


def _top(tokenizer, logits: Tensor, position: int) -> dict:
    p = logits[position].float().softmax(-1)
    i = int(p.argmax())
    return {"id": i, "text": tokenizer.token_str(i), "p": float(f"{float(p[i]):.6g}")}


def _check(seq: Sequence, r: int, iteration: int, token: int | None = None, source: Sequence | None = None) -> None:
    if not isinstance(r, int) or r < 1:
        raise InferenceError(f"r must be a whole number >= 1, got {r}")
    if not 1 <= iteration <= r:
        raise InferenceError(f"iteration {iteration} is outside 1..{r} (the state after iteration i, at r = {r})")
    if token is not None and not 0 <= token < len(seq.ids):
        raise InferenceError(f"token {token} is outside 0..{len(seq.ids) - 1} (positions of the prompt and its answer)")
    if token is not None and source is not None and token >= len(source.ids):
        raise InferenceError(f"the source prompt {source.prompt!r} has only {len(source.ids)} tokens, so no state at "
                             f"position {token}: choose an earlier token or a longer source prompt")


def _record(kind: str, model, tokenizer, seq: Sequence, r: int, clean_logits: Tensor, after_logits: Tensor,
            positions: list[int], targets: list[int], init_scale, seed, **fields) -> dict:
    clean = float(_answer_logp(clean_logits[None], positions, targets)[0])
    after = float(_answer_logp(after_logits[None], positions, targets)[0])
    kept = all(int(after_logits[p].argmax()) == t for p, t in zip(positions, targets))
    return {
        "kind": "intervention", "type": kind, "version": VERSION, "prompt": seq.prompt, "r": r,
        "init_scale": model.cfg.init_scale if init_scale is None else init_scale, "seed": seed,
        "n_prompt": seq.n_prompt, "tokens": [tokenizer.token_str(i) for i in seq.ids],
        "answer": {"positions": positions, "ids": targets, "text": [tokenizer.token_str(i) for i in targets]},
        "logp_clean": clean, "logp_after": after, "delta": after - clean,
        "top_clean": _top(tokenizer, clean_logits, positions[0]), "top_after": _top(tokenizer, after_logits, positions[0]),
        "answer_kept": kept, **fields,
    }


def _trace(model, tokenizer, seq: Sequence, e, s0, states, r, init_scale, seed, lens, extra) -> dict:
    scale = model.cfg.init_scale if init_scale is None else init_scale
    return trace_record(model, tokenizer, seq.ids, e, s0, states, prompt=seq.prompt, n_prompt=seq.n_prompt,
                        crit=parse_exit("kl:5e-4"), scale=scale, seed=seed, lens=lens, extra=extra)


def patch(model, tokenizer, seq: Sequence, source: Sequence, token: int, iteration: int, r: int, *,
          init_scale: float | None = None, seed: int = 0, lens=None, with_trace: bool = True) -> dict:
    """Replace the state of `token` after `iteration` by the source's state of the same position
    (same start seed), run the remaining iterations, and measure the answer."""
    _check(seq, r, iteration, token, source)
    rope, e, s0, states = trajectory(model, seq, r, init_scale, seed)
    _, _, _, src_states = trajectory(model, source, r, init_scale, seed)
    with torch.inference_mode():
        clean_logits = model.decode(states[-1][None], rope)[0]
        s = states[iteration - 1].clone()
        s[token] = src_states[iteration - 1][token]
        after = [s[None]] + _run(model, s[None], e, rope, iteration, r)
        new_states = torch.cat([states[:iteration - 1], torch.cat(after)])
        after_logits = model.decode(new_states[-1][None], rope)[0]
    positions, targets = _readout(seq, clean_logits)
    rec = _record("patch", model, tokenizer, seq, r, clean_logits, after_logits, positions, targets, init_scale, seed,
                  source_prompt=source.prompt, token=token, iteration=iteration)
    if with_trace:
        rec["trace"] = _trace(model, tokenizer, seq, e, s0, new_states, r, init_scale, seed, lens,
                              {"intervention": f"patch token {token} at iteration {iteration} from {source.prompt!r}"})
    return rec


def causal_trace(model, tokenizer, clean: Sequence, corrupt: Sequence, r: int, *, init_scale: float | None = None,
                 seed: int = 0, on_iteration=None, cancel=None) -> dict:
    """Run the corrupt sequence and restore each (token, iteration) state from the clean one, one
    cell at a time (a batch of one cell per token for each iteration): the clean answer's
    log-probability per cell. `on_iteration(i, r)` reports progress; a set `cancel` stops early."""
    if len(clean.ids) != len(corrupt.ids) or clean.n_prompt != corrupt.n_prompt:
        raise InferenceError(f"the corrupted prompt {corrupt.prompt!r} has {corrupt.n_prompt} tokens and the prompt "
                             f"{clean.n_prompt}: a causal trace patches position by position, so give one as long")
    _check(clean, r, 1)
    rope, e_bad, _, bad_states = trajectory(model, corrupt, r, init_scale, seed)
    _, _, _, good_states = trajectory(model, clean, r, init_scale, seed)
    T = len(clean.ids)
    with torch.inference_mode():
        clean_logits = model.decode(good_states[-1][None], rope)[0]
        bad_logits = model.decode(bad_states[-1][None], rope)[0]
    positions, targets = _readout(clean, clean_logits)
    logp = torch.full((T, r), float("nan"))
    for i in range(1, r + 1):
        if cancel is not None and cancel.is_set():
            break
        with torch.inference_mode():
            s = bad_states[i - 1][None].repeat(T, 1, 1)
            rows = torch.arange(T)
            s[rows, rows] = good_states[i - 1]
            final = (_run(model, s, e_bad.expand(T, -1, -1), rope, i, r) or [s])[-1]
            logp[:, i - 1] = _answer_logp(model.decode(final, rope), positions, targets).cpu()
        if on_iteration is not None:
            on_iteration(i, r)
    lp_clean = float(_answer_logp(clean_logits[None], positions, targets)[0])
    lp_bad = float(_answer_logp(bad_logits[None], positions, targets)[0])
    gap = lp_clean - lp_bad
    recovery = (logp - lp_bad) / gap if abs(gap) > 1e-12 else torch.zeros_like(logp)
    rec = {
        "kind": "intervention", "type": "causal_trace", "version": VERSION, "prompt": clean.prompt,
        "corrupt_prompt": corrupt.prompt, "r": r, "init_scale": model.cfg.init_scale if init_scale is None else init_scale,
        "seed": seed, "n_prompt": clean.n_prompt, "tokens": [tokenizer.token_str(i) for i in clean.ids],
        "corrupt_tokens": [tokenizer.token_str(i) for i in corrupt.ids],
        "answer": {"positions": positions, "ids": targets, "text": [tokenizer.token_str(i) for i in targets]},
        "logp_clean": lp_clean, "logp_corrupt": lp_bad,
        "logp": [[_num(v) for v in row] for row in logp.tolist()],
        "recovery": [[_num(v) for v in row] for row in recovery.tolist()],
        "complete": not bool(torch.isnan(logp).any()),
    }
    rec["carriers"] = carriers(rec)
    return rec


def _num(v: float):
    return None if v != v else float(f"{v:.6g}")


def carriers(rec: dict, threshold: float = 0.5) -> list[dict]:
    """Per token: the first iteration from which restoring its state alone recovers at least
    `threshold` of the answer's log-probability gap, at every later iteration too (None: never)."""
    out = []
    for t, row in enumerate(rec["recovery"]):
        first = None
        for i in range(len(row) - 1, -1, -1):
            if row[i] is None or row[i] < threshold:
                break
            first = i + 1
        out.append({"token": t, "text": rec["tokens"][t], "from_iteration": first,
                    "max_recovery": max((v for v in row if v is not None), default=None)})
    return out


def inject_off(model, tokenizer, seq: Sequence, iteration: int, r: int, *, source: Sequence | None = None,
               init_scale: float | None = None, seed: int = 0, lens=None, with_trace: bool = True) -> dict:
    """From core step `iteration` on, the input injection receives zeros (or `source`'s embedding
    of the same positions) instead of the prompt's."""
    if not model.cfg.is_recurrent or model.cfg.injection != "adapter":
        raise InferenceError("this model has no input injection to switch off (Ouro-style loops feed the state "
                             "alone); use --noise or --patch-from instead")
    _check(seq, r, iteration)
    rope, e, s0, states = trajectory(model, seq, r, init_scale, seed)
    if source is not None:
        if len(source.ids) < len(seq.ids):
            raise InferenceError(f"the injection source {source.prompt!r} has {len(source.ids)} tokens, fewer than the "
                                 f"prompt's {len(seq.ids)}: give a source at least as long")
        _, e_src, _ = _start(model, source.ids, init_scale, seed)
        e_alt = e_src[:, :len(seq.ids)]
    else:
        e_alt = torch.zeros_like(e)
    with torch.inference_mode():
        start = states[iteration - 2][None] if iteration > 1 else s0[None]
        after = _run(model, start, e, rope, iteration - 1, r, e_from=iteration, e_alt=e_alt)
        new_states = torch.cat([states[:iteration - 1], torch.cat(after)])
        clean_logits = model.decode(states[-1][None], rope)[0]
        after_logits = model.decode(new_states[-1][None], rope)[0]
    positions, targets = _readout(seq, clean_logits)
    rec = _record("inject_off", model, tokenizer, seq, r, clean_logits, after_logits, positions, targets, init_scale, seed,
                  iteration=iteration, injected=source.prompt if source is not None else "zeros",
                  distance=_distance(new_states, states))
    if with_trace:
        what = f"injection {'of ' + repr(source.prompt) if source is not None else 'of zeros'} from iteration {iteration}"
        rec["trace"] = _trace(model, tokenizer, seq, e, s0, new_states, r, init_scale, seed, lens, {"intervention": what})
    return rec


def _distance(states: Tensor, clean: Tensor) -> list[list[float]]:
    """[T][r] ||s'_i - s_i|| / ||s_i|| per token and iteration."""
    d = (states - clean).float().norm(dim=-1) / clean.float().norm(dim=-1).clamp_min(1e-12)
    return [[float(f"{v:.6g}") for v in row] for row in d.T.tolist()]


def add_noise(model, tokenizer, seq: Sequence, sigma: float, iteration: int, r: int, *, init_scale: float | None = None,
              seed: int = 0, noise_seed: int = 0, tol: float = RECOVER_TOL, lens=None, with_trace: bool = True) -> dict:
    """Add Gaussian noise of relative size `sigma` (per token: sigma * ||s_i|| along a random
    direction) to every state after `iteration`, run on to r, and find when each token's state
    comes back within `tol` (relative distance to the unchanged run) and stays there."""
    if not sigma > 0:
        raise InferenceError(f"noise size must be > 0 (relative to the state's norm), got {sigma}")
    _check(seq, r, iteration)
    rope, e, s0, states = trajectory(model, seq, r, init_scale, seed)
    with torch.inference_mode():
        s = states[iteration - 1]
        gen = torch.Generator().manual_seed(noise_seed)
        n = torch.randn(s.shape, generator=gen).to(device=s.device, dtype=torch.float32)
        n = n * (sigma * s.float().norm(dim=-1, keepdim=True) / n.norm(dim=-1, keepdim=True).clamp_min(1e-12))
        s = (s.float() + n).to(s.dtype)
        after = [s[None]] + _run(model, s[None], e, rope, iteration, r)
        new_states = torch.cat([states[:iteration - 1], torch.cat(after)])
        clean_logits = model.decode(states[-1][None], rope)[0]
        after_logits = model.decode(new_states[-1][None], rope)[0]
    dist = _distance(new_states, states)
    recovered = []
    for row in dist:
        at = None
        for i in range(r - 1, iteration - 2, -1):
            if row[i] >= tol:
                break
            at = i + 1
        recovered.append(at)
    positions, targets = _readout(seq, clean_logits)
    rec = _record("noise", model, tokenizer, seq, r, clean_logits, after_logits, positions, targets, init_scale, seed,
                  iteration=iteration, sigma=sigma, noise_seed=noise_seed, tol=tol, distance=dist, recovered_at=recovered)
    if with_trace:
        rec["trace"] = _trace(model, tokenizer, seq, e, s0, new_states, r, init_scale, seed, lens,
                              {"intervention": f"noise {sigma:g} at iteration {iteration}"})
    return rec


def parse_at(spec: str) -> tuple[int, int]:
    """"TOKEN,ITER" -> (token position, iteration)."""
    try:
        t, i = (int(v) for v in spec.split(","))
    except ValueError:
        raise InferenceError(f"--at {spec!r} must be TOKEN,ITER: a token position and an iteration, e.g. 5,3") from None
    return t, i


def parse_noise(spec: str) -> tuple[float, int]:
    """"SIGMA@ITER" -> (relative size, iteration)."""
    try:
        sigma, it = spec.split("@")
        return float(sigma), int(it)
    except ValueError:
        raise InferenceError(f"--noise {spec!r} must be SIGMA@ITER, e.g. 0.5@4 (relative size 0.5 at iteration 4)") from None


def save_intervention(root, record: dict, name: str | None = None):
    """root/interventions/NAME.json beside the traces; a taken name gets -2, -3, ..."""
    from pathlib import Path

    return write_json(Path(root) / "interventions", name or default_name(record["type"].replace("_", "-")), record)
