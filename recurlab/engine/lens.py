"""Lenses per iteration: what the state after core iteration i says about the next token.

    lens = get_lens("logit")                                  # "coda", "logit" or a TunedLens
    logits = lens.logits(model, states, rope)                 # states (r, T, d) -> (r, T, V)
    tuned = TunedLens(model.cfg.n_embd, iterations=16, place="coda")
    tuned.logits(model, states, rope)                         # translator i, then the coda
    kl_to_final(logits, final_logits)                         # KL(p_r || q), per position

Three lenses, all through the model's public `decode` step:

    coda    the coda applied to s_i (the model's own readout, as after the last iteration)
    logit   the norms and the head applied to s_i directly, the coda's blocks skipped
            (`decode(..., coda=False)`; on a model without coda blocks it equals the coda lens)
    tuned   a learned affine translator per iteration, s -> s + W_i s + b_i (W_i, b_i start at 0:
            the identity), before the coda (place "coda") or before the head (place "head"),
            trained to match the final distribution (recurlab.engine.lens_train). Iterations
            past the ones it was trained for use its last translator.

KL to the final distribution is KL(p_r || q_i), the tuned-lens objective: how many nats the lens
distribution q_i loses against the model's own final prediction p_r.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from recurlab.errors import InferenceError

LENS_NAMES = ("coda", "logit", "tuned")
PLACES = ("coda", "head")


class Lens:
    """The coda lens (`coda=True`) or the logit lens (`coda=False`)."""

    def __init__(self, name: str):
        self.name = name

    def logits(self, model, states: Tensor, rope, first: int = 1) -> Tensor:
        """(r, T, d) states after iterations first..first+r-1 -> (r, T, V) logits."""
        coda = self.name == "coda"
        return torch.stack([model.decode(s[None], rope, coda=coda)[0] for s in states])

    def describe(self) -> str:
        return self.name


class TunedLens(nn.Module):
    """One affine translator per iteration, s -> s + W_i s + b_i, then the coda or the head."""

    name = "tuned"

    def __init__(self, d: int, iterations: int, place: str = "coda"):
        super().__init__()
        if place not in PLACES:
            raise InferenceError(f"tuned lens place {place!r} must be one of {', '.join(PLACES)}")
        if iterations < 1:
            raise InferenceError(f"a tuned lens needs at least 1 iteration, got {iterations}")
        self.place = place
        self.weight = nn.Parameter(torch.zeros(iterations, d, d))
        self.bias = nn.Parameter(torch.zeros(iterations, d))
        self.meta: dict = {}  # what the saved record says about it (name, training data, KL)

    @property
    def iterations(self) -> int:
        return self.weight.shape[0]

    def translate(self, s: Tensor, iteration: int) -> Tensor:
        """The state after `iteration` (1-based) mapped by its translator, in float32, back in s's dtype."""
        k = min(max(iteration, 1), self.iterations) - 1
        sf = s.float()
        return (sf + sf @ self.weight[k].T + self.bias[k]).to(s.dtype)

    def logits(self, model, states: Tensor, rope, first: int = 1) -> Tensor:
        coda = self.place == "coda"
        return torch.stack([model.decode(self.translate(s, first + j)[None], rope, coda=coda)[0]
                            for j, s in enumerate(states)])

    def describe(self) -> str:
        return f"tuned ({self.meta.get('name', 'unsaved')}, before the {self.place})"


def get_lens(spec, tuned: TunedLens | None = None):
    """A lens by name ("coda", "logit", "tuned"), or the lens object itself; "tuned" needs `tuned`."""
    if spec is None:
        return Lens("coda")
    if isinstance(spec, (Lens, TunedLens)):
        return spec
    if spec not in LENS_NAMES:
        raise InferenceError(f"unknown lens {spec!r}: use one of {', '.join(LENS_NAMES)}")
    if spec == "tuned":
        if tuned is None:
            raise InferenceError("no tuned lens for this model yet: train one with `recurlab lens train RUN` "
                                 "(or `--model PATH --data FILE`)")
        return tuned
    return Lens(spec)


def kl_to_final(logits: Tensor, final_logits: Tensor) -> Tensor:
    """KL(p_final || q) over the last axis, in float32."""
    logq = logits.float().log_softmax(-1)
    logp = final_logits.float().log_softmax(-1)
    return (logp.exp() * (logp - logq)).sum(-1).clamp_min(0)

