"""Options of the parallel (diffusion-style) sampler and their parsing from a `--sampler` spec (no torch).

    cfg = parse_sampler("parallel:inner=4,headway=1,freeze=latent:0.03,noise=0.5")
    cfg = parse_sampler("parallel")               # the defaults below
    parse_sampler("sequential")                   # None: the plain token-by-token decoder
    cfg.validate(r=8)                             # InferenceError with one line on a bad value

Freeze rules (a wavefront prefix freezes once every position in it passes the rule and was computed
with the token its predecessor now predicts; no position runs more than r iterations):

    latent:T       relative latent change over the last outer step ||s - s_prev|| / ||s|| below T
                   (the reference's `latent-diff`, default 0.03)
    stable:N       the position's predicted next token unchanged for N outer steps
    iterations:N   exactly N iterations (N <= r; plain `iterations` means r). A position whose token
                   or whose predecessors' tokens change restarts from a fresh state, so that with
                   headway 1 and no noise the output equals sequential decoding at N (the strict rule)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from recurlab.errors import InferenceError

FREEZE_RULES = {
    "latent": "relative latent change over one outer step below the threshold",
    "stable": "predicted token unchanged for N outer steps",
    "iterations": "exactly N iterations, restarting a position whose context changed (exact)",
}
KV_MODES = {
    "latest": "every position reads each other position's latest cache entry (one slot per layer)",
    "aligned": "a position at iteration i reads iteration i's entries, like sequential decoding (r slots)",
}
KEYS = ("inner", "headway", "freeze", "noise", "smoothing", "damped", "wavefront", "steps", "kv")
FREEZE_DEFAULTS = {"latent": 0.03, "stable": 3.0, "iterations": 0.0}  # a rule's threshold when the spec gives none
FREEZE_EXAMPLE = "latent:0.03, stable:3 or iterations[:N]"


@dataclass
class ParallelConfig:
    inner: int | None = None  # core iterations per outer step over the whole wavefront; None: max(1, r // 8)
    headway: int = 1  # new positions appended per outer step
    freeze: str = "latent"
    threshold: float = FREEZE_DEFAULTS["latent"]  # latent: relative change; stable: outer steps; iterations: N (0 = r)
    noise: float = 0.5  # weight of fresh random state mixed into the wavefront each outer step
    damped: bool = True  # noise / (1 + iterations the position has had), else constant
    smoothing: float = 0.1  # weight of the previous outer step's embedding in the new one
    wavefront: int = 128  # most unfrozen positions at once
    max_steps: int = 4096  # most outer steps
    kv: str = "latest"

    @property
    def strict(self) -> bool:
        return self.freeze == "iterations"

    def inner_for(self, r: int) -> int:
        """`auto` takes the reference's ratio (4 inner iterations at r = 32): a token then needs at
        least 8 outer steps' worth of iterations to reach r, and passes per token stay near r / 8."""
        return self.inner if self.inner is not None else max(1, r // 8)

    def freeze_iterations(self, r: int) -> int:
        """The rule's N for `iterations`, else the cap r."""
        return int(self.threshold) if self.strict and self.threshold else r

    def validate(self, r: int | None = None) -> "ParallelConfig":
        if self.freeze not in FREEZE_RULES:
            raise InferenceError(f"unknown freeze rule {self.freeze!r}: use {FREEZE_EXAMPLE}")
        if self.inner is not None and (not isinstance(self.inner, int) or self.inner < 1):
            raise InferenceError(f"parallel inner iterations must be >= 1 (core passes per outer step), got {self.inner}")
        if self.headway < 1:
            raise InferenceError(f"parallel headway must be >= 1 new position per outer step, got {self.headway}")
        if self.wavefront < 1:
            raise InferenceError(f"parallel wavefront must be >= 1 position, got {self.wavefront}")
        if self.headway > self.wavefront:
            raise InferenceError(f"parallel headway ({self.headway}) must not exceed the wavefront ({self.wavefront}); "
                                 "lower headway= or raise wavefront=")
        if not 0 <= self.threshold < math.inf:  # also NaN
            raise InferenceError(f"freeze threshold must be >= 0 and finite, got {self.threshold:g}")
        if self.freeze in ("stable", "iterations") and float(self.threshold) != int(self.threshold):
            raise InferenceError(f"freeze rule {self.freeze} takes a whole number, e.g. {self.freeze}:3, got {self.threshold:g}")
        if self.freeze == "stable" and self.threshold < 1:
            raise InferenceError(f"freeze rule stable needs at least 1 outer step, e.g. stable:3, got {self.threshold:g}")
        if self.strict and r is not None and self.threshold > r:
            raise InferenceError(f"freeze rule iterations:{int(self.threshold)} exceeds r ({r}); lower it or raise --r")
        if not 0 <= self.noise <= 1:  # NaN fails every comparison, so it is refused too
            raise InferenceError(f"parallel noise must be in [0, 1], got {self.noise:g}")
        if not 0 <= self.smoothing < 1:
            raise InferenceError(f"parallel smoothing must be in [0, 1), got {self.smoothing:g}")
        if self.max_steps < 1:
            raise InferenceError(f"parallel steps (most outer steps) must be >= 1, got {self.max_steps}")
        if self.kv not in KV_MODES:
            raise InferenceError(f"parallel kv mode {self.kv!r}: use latest or aligned")
        return self

    def params(self, keys: tuple[str, ...] = KEYS) -> str:
        """The `key=value,...` part of the spec, for the given keys in KEYS order."""
        freeze = self.freeze if self.strict and not self.threshold else f"{self.freeze}:{self.threshold:g}"
        values = {"inner": self.inner if self.inner is not None else "auto", "headway": self.headway, "freeze": freeze,
                  "noise": f"{self.noise:g}", "smoothing": f"{self.smoothing:g}", "damped": int(self.damped),
                  "wavefront": self.wavefront, "steps": self.max_steps, "kv": self.kv}
        return ",".join(f"{key}={values[key]}" for key in KEYS if key in keys)

    def spec(self) -> str:
        return f"parallel:{self.params()}"

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "spec": self.spec()}


SPEC_HELP = f"parallel[:{ParallelConfig().params()}]"  # the defaults, as the CLI's help and errors show them


def _value(key: str, text: str, kind):
    try:
        if kind is bool:
            if text.lower() not in ("0", "1", "true", "false", "on", "off"):
                raise ValueError
            return text.lower() in ("1", "true", "on")
        return kind(text)
    except ValueError:
        what = {int: "a whole number", float: "a number", bool: "0 or 1"}[kind]
        raise InferenceError(f"parallel option {key}: expected {what}, got {text!r}") from None


def parse_sampler(spec) -> ParallelConfig | None:
    """`sequential` / None -> None; `parallel[:key=value,...]` -> ParallelConfig (not yet validated)."""
    if spec is None or isinstance(spec, ParallelConfig):
        return spec
    text = str(spec).strip()
    name, _, rest = text.partition(":")
    name = name.strip().lower()
    if name in ("sequential", "plain", ""):
        if rest.strip():
            raise InferenceError(f"the sequential sampler takes no options, got {text!r}")
        return None
    if name != "parallel":
        raise InferenceError(f"unknown sampler {name!r}: use sequential or {SPEC_HELP}")
    cfg = ParallelConfig()
    kinds = {"inner": int, "headway": int, "noise": float, "smoothing": float, "damped": bool,
             "wavefront": int, "steps": int}
    for part in [p.strip() for p in rest.split(",") if p.strip()]:
        key, sep, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or key not in KEYS:
            raise InferenceError(f"parallel option {part!r}: use keys {', '.join(KEYS)} as key=value, e.g. {SPEC_HELP}")
        if key == "freeze":
            rule, colon, thr = value.partition(":")
            cfg.freeze = rule.strip().lower()
            if cfg.freeze not in FREEZE_RULES:
                raise InferenceError(f"unknown freeze rule {cfg.freeze!r}: use {FREEZE_EXAMPLE}")
            if colon:
                cfg.threshold = _value("freeze threshold", thr.strip(), float)
            else:
                cfg.threshold = FREEZE_DEFAULTS[cfg.freeze]
        elif key == "kv":
            cfg.kv = value.lower()
        elif key == "steps":
            cfg.max_steps = _value(key, value, int)
        elif key == "inner" and value.lower() == "auto":
            cfg.inner = None
        else:
            setattr(cfg, key, _value(key, value, kinds[key]))
    return cfg
# what the Generate screen's parameter box starts with (damped and steps keep their defaults)
SCREEN_PARAMS = ParallelConfig().params(("inner", "headway", "freeze", "noise", "smoothing", "wavefront", "kv"))
