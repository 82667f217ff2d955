"""Generation options, their defaults and their parsing from command-line specs (no torch here).

    opts = GenerateOptions(r=16, exit="kl:5e-4", speculative="draft=4,lookahead=8").validate()
    parse_exit("argmax:3,min=2,every=2")   # ExitCriterion(kind="argmax", threshold=3, ...)
    EXIT_CRITERIA                          # ("kl:5e-4", "kl-rev:5e-4", ...): what the screens offer
    speculative_draft(16)                  # 4: the draft iterations the Generate screen uses at r

The defaults that the CLI, the TUI and the engine share live here (and the parallel sampler's in
recurlab.options.parallel), so that a default is written once. Every mistake raises
InferenceError with one line that says what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from recurlab.errors import InferenceError
from recurlab.options.parallel import ParallelConfig, parse_sampler

EXIT_KINDS = {
    "kl": "KL(p_prev || p_cur) of successive output distributions below the threshold (the paper's)",
    "kl-rev": "KL(p_cur || p_prev), the other direction, below the threshold",
    "entropy": "absolute change of the output entropy below the threshold",
    "latent": "relative latent change ||s_i - s_prev|| / ||s_i|| below the threshold",
    "argmax": "the argmax token unchanged for `threshold` successive checks",
    "cosine": "cosine similarity of successive states at or above the threshold",
    "gate": "a learned exit gate (Ouro): the cumulative exit probability reaches the threshold",
}
CACHE_LOOKUPS = {
    "latest": "an exited token is read at its latest entry (the reference's `latest-m4`)",
    "existing": "only entries that exist at the current iteration are read (the reference's default)",
}
# one example setting per criterion: the threshold an error suggests for a bare `kind`, the
# settings the Inspector and Generate screens cycle through and the examples of the CLI's help
EXIT_PRESETS = {"kl": "5e-4", "kl-rev": "5e-4", "entropy": "1e-3", "latent": "1e-2", "argmax": "3", "cosine": "0.999",
                "gate": "0.9"}
_EXAMPLES = [f"{kind}:{value}" for kind, value in EXIT_PRESETS.items() if kind != "kl-rev"]
EXIT_EXAMPLE = ", ".join(_EXAMPLES[:-1]) + " or " + _EXAMPLES[-1]
EXIT_CRITERIA = tuple(f"{kind}:{value}" for kind, value in EXIT_PRESETS.items() if kind != "gate")
GATE_CRITERION = f"gate:{EXIT_PRESETS['gate']}"  # offered for models with a learned exit gate (Ouro)

# the device a model opens on unless told: CUDA when this machine has it, else the CPU (recurlab.devices)
DEVICE = "auto"
DEVICE_HELP = "auto (CUDA when present, else the CPU), cpu, cuda or cuda:N."
# the r slider of the Inspector and Generate screens before a model is open: (low, high, value)
R_SLIDER = (1, 32, 8)
SPECULATIVE_LOOKAHEAD = 4  # tokens the Generate screen drafts per speculative round


def speculative_draft(r: int) -> int:
    """Draft iterations for verification at r: a quarter of it (the Generate screen's choice)."""
    return max(1, r // 4)


@dataclass
class ExitCriterion:
    """Per-token adaptive exit. A threshold of 0 disables the exit (the token runs the full r)."""

    kind: str = "kl"
    threshold: float = 5e-4
    min_iterations: int = 1
    max_iterations: int | None = None  # None: the call's r
    check_every: int = 1  # criteria compare states `check_every` iterations apart

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    def spec(self) -> str:
        return f"{self.kind}:{self.threshold:g}"

    def validate(self) -> "ExitCriterion":
        if self.kind not in EXIT_KINDS:
            raise InferenceError(f"unknown exit criterion {self.kind!r}: use one of {EXIT_EXAMPLE}")
        if not 0 <= self.threshold < math.inf:  # also rejects NaN
            raise InferenceError(f"exit threshold must be >= 0 and finite (0 disables the exit), got {self.threshold:g}")
        if self.kind == "cosine" and self.threshold > 1:
            raise InferenceError(f"cosine exit threshold must be in [0, 1], got {self.threshold:g}")
        if self.kind == "gate" and self.threshold > 1:
            raise InferenceError(f"gate exit threshold is a cumulative probability in (0, 1], got {self.threshold:g}")
        if self.kind == "gate" and self.check_every != 1:
            raise InferenceError("the gate exit accumulates its probability at every step: drop every= from --exit gate:...")
        if self.kind == "argmax" and float(self.threshold) != int(self.threshold):
            raise InferenceError(f"argmax exit needs a whole number of checks (e.g. argmax:3), got {self.threshold:g}")
        if self.min_iterations < 1:
            raise InferenceError(f"exit min iterations must be >= 1, got {self.min_iterations}")
        if self.max_iterations is not None and self.max_iterations < self.min_iterations:
            raise InferenceError(
                f"exit max iterations ({self.max_iterations}) must be >= min iterations ({self.min_iterations})"
            )
        if self.check_every < 1:
            raise InferenceError(f"exit check interval must be >= 1, got {self.check_every}")
        return self


def _number(text: str, what: str, integer: bool = False):
    try:
        return int(text) if integer else float(text)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise InferenceError(f"{what}: expected {kind}, got {text!r}") from None


def parse_exit(spec: str | ExitCriterion | None) -> ExitCriterion | None:
    """`kind:threshold[,min=M][,max=N][,every=C]`, e.g. `kl:5e-4` or `argmax:3,min=2`."""
    if spec is None or isinstance(spec, ExitCriterion):
        return spec.validate() if spec is not None else None
    head, *extras = [p.strip() for p in str(spec).split(",")]
    kind, sep, value = head.partition(":")
    kind = kind.strip().lower()
    if kind not in EXIT_KINDS:
        raise InferenceError(f"unknown exit criterion {kind!r} in {spec!r}: use one of {EXIT_EXAMPLE}")
    crit = ExitCriterion(kind=kind)
    if sep:
        crit.threshold = _number(value, f"exit threshold in {spec!r}")
    elif kind not in ("kl", "kl-rev"):
        raise InferenceError(f"exit criterion {kind!r} needs a threshold, e.g. {kind}:{EXIT_PRESETS[kind]}")
    names = {"min": "min_iterations", "max": "max_iterations", "every": "check_every"}
    for extra in extras:
        key, sep, value = extra.partition("=")
        if not sep or key.strip() not in names:
            raise InferenceError(f"exit option {extra!r} in {spec!r}: use min=N, max=N or every=N")
        setattr(crit, names[key.strip()], _number(value.strip(), f"exit option {key.strip()}", integer=True))
    return crit.validate()


def parse_r(spec: str) -> int:
    """The --r of generate and inspect: one whole number >= 1."""
    text = str(spec).strip()
    try:
        r = int(text)
    except ValueError:
        raise InferenceError(f"--r must be a whole number of iterations like 16, got {spec!r}") from None
    if r < 1:
        raise InferenceError(f"--r must be >= 1 (r = 0 runs no recurrence), got {spec!r}")
    return r


@dataclass
class SpeculativeConfig:
    """Draft `lookahead` tokens with `draft` iterations each, then verify them at r in one pass."""

    draft: int = 4
    lookahead: int = 8

    def validate(self, r: int) -> "SpeculativeConfig":
        if self.draft < 1:
            raise InferenceError(f"speculative draft iterations must be >= 1, got {self.draft}")
        if self.draft >= r:
            raise InferenceError(f"speculative draft iterations ({self.draft}) must be below r ({r}); lower draft= or raise --r")
        if self.lookahead < 1:
            raise InferenceError(f"speculative lookahead must be >= 1 token, got {self.lookahead}")
        return self


def parse_speculative(spec: str | SpeculativeConfig | None) -> SpeculativeConfig | None:
    """`draft=4,lookahead=8` (either key may be left out)."""
    if spec is None or isinstance(spec, SpeculativeConfig):
        return spec
    cfg = SpeculativeConfig()
    for part in [p.strip() for p in str(spec).split(",") if p.strip()]:
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in ("draft", "lookahead"):
            raise InferenceError(f"speculative option {part!r}: use draft=N,lookahead=N (e.g. draft=4,lookahead=8)")
        setattr(cfg, key, _number(value.strip(), f"speculative {key}", integer=True))
    return cfg


@dataclass
class GenerateOptions:
    r: int = 16
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0: greedy
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1: off
    stop_ids: tuple[int, ...] | None = None  # None: the tokenizer's eos
    init_scale: float | None = None  # None: the model config's; 0: deterministic zero start
    seed: int = 0
    exit: ExitCriterion | str | None = None
    kv_budget: int | None = None  # None: one slot per iteration
    # how later tokens read a token that exited early, at the iterations it skipped (see KVCache)
    cache_lookup: str = "latest"
    continuous: bool = False
    speculative: SpeculativeConfig | str | None = None
    sampler: ParallelConfig | str | None = None  # None / "sequential", or "parallel[:inner=2,...]"
    compile: bool = False  # one-column decode steps through a compiled core iteration (recurlab.engine.compiled)

    def validate(self) -> "GenerateOptions":
        """Parse the spec strings in place and reject impossible values."""
        if not isinstance(self.r, int) or self.r < 1:
            raise InferenceError(f"r must be a whole number >= 1 (iterations of the recurrent core), got {self.r}")
        if self.max_new_tokens < 1:
            raise InferenceError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.temperature >= 0:
            raise InferenceError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k < 0:
            raise InferenceError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise InferenceError(f"top_p must be in (0, 1] (1 = off), got {self.top_p}")
        if self.init_scale is not None and not self.init_scale >= 0:
            raise InferenceError(f"init_scale must be >= 0 (0 = zero start), got {self.init_scale}")
        if self.kv_budget is not None and self.kv_budget < 1:
            raise InferenceError(f"kv_budget must be >= 1 cache slot per token, got {self.kv_budget}")
        if self.cache_lookup not in CACHE_LOOKUPS:
            raise InferenceError(f"cache lookup must be one of {', '.join(CACHE_LOOKUPS)}, got {self.cache_lookup!r}")
        self.exit = parse_exit(self.exit)
        self.speculative = parse_speculative(self.speculative)
        self.sampler = parse_sampler(self.sampler)
        if self.sampler is not None:
            self.sampler.validate(self.r)
            if self.speculative is not None:
                raise InferenceError("the parallel sampler and speculative decoding are two samplers: drop one")
            if self.exit is not None and self.exit.enabled:
                raise InferenceError("the parallel sampler freezes positions by its own rule: drop --exit (use freeze=...)")
            if self.kv_budget is not None:
                raise InferenceError("the parallel sampler has its own cache layout (kv=latest|aligned): drop --kv-budget")
            if self.compile:
                raise InferenceError("--compile compiles sequential decode steps; the parallel sampler runs eagerly: drop one")
        if self.speculative is not None:
            self.speculative.validate(self.r)
            if self.exit is not None and self.exit.enabled:
                raise InferenceError("speculative decoding verifies at a fixed r: drop --exit or --speculative")
            if self.continuous:
                raise InferenceError("speculative decoding verifies many tokens in one pass: drop --continuous or --speculative")
            if self.kv_budget is not None and self.kv_budget < self.max_iterations:
                # a verify pass writes a shared slot for all its tokens at once, so later tokens of the
                # pass would read other iterations' entries than one-token-at-a-time decoding does
                raise InferenceError("speculative decoding is exact only with a full KV cache: drop --kv-budget or --speculative")
        return self

    @property
    def max_iterations(self) -> int:
        """The most iterations any token may run (the cache needs a slot for each)."""
        if self.exit is not None and self.exit.max_iterations is not None:
            return max(self.r, self.exit.max_iterations)
        return self.r

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["exit"] = self.exit.spec() if isinstance(self.exit, ExitCriterion) else self.exit
        if isinstance(self.speculative, SpeculativeConfig):
            d["speculative"] = f"draft={self.speculative.draft},lookahead={self.speculative.lookahead}"
        d["sampler"] = self.sampler.spec() if isinstance(self.sampler, ParallelConfig) else self.sampler
        d["stop_ids"] = list(self.stop_ids) if self.stop_ids is not None else None
        return d
