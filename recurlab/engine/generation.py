"""What a generation gives back: one event per generated token, and the result of the whole call.

    ev = TokenEvent(row=0, index=3, token_id=17, text="4", iterations=9)
    res.text, res.token_ids, res.n_tokens, res.tokens_per_s, res.mean_iterations, res.to_dict()

Their own module, so that the decoders under the Engine (recurlab.engine.many, the parallel
sampler) build them without importing the Engine.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenEvent:
    row: int  # which prompt of the batch
    index: int  # position among the row's generated tokens
    token_id: int
    text: str  # the piece this token adds to the row's text
    iterations: int  # core iterations the token used


@dataclass
class GenerationResult:
    prompts: list[str]
    prompt_ids: list[list[int]]
    generated_ids: list[list[int]]
    texts: list[str]
    iterations: list[list[int]]
    stop_reasons: list[str]
    prefill_seconds: float
    decode_seconds: float
    cache_bytes: int
    options: dict
    speculative: dict | None = None
    parallel: dict | None = None  # the parallel sampler's statistics and wavefronts (recurlab.engine.parallel_sampler)
    compile_seconds: float = 0.0  # of prefill + decode, the time spent compiling (`compile`'s first call)
    depth: dict | None = None  # depth batching's statistics (recurlab.engine.many)

    @property
    def text(self) -> str:
        return self.texts[0]

    @property
    def token_ids(self) -> list[int]:
        return self.generated_ids[0]

    @property
    def n_tokens(self) -> int:
        return sum(len(g) for g in self.generated_ids)

    @property
    def seconds(self) -> float:
        return self.prefill_seconds + self.decode_seconds

    @property
    def tokens_per_s(self) -> float:
        return self.n_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def mean_iterations(self) -> float:
        its = [i for row in self.iterations for i in row]
        return sum(its) / len(its) if its else 0.0

    @property
    def acceptance_rate(self) -> float | None:
        return self.speculative["acceptance_rate"] if self.speculative else None

    def to_dict(self) -> dict:
        return {
            "prompts": self.prompts, "prompt_ids": self.prompt_ids, "generated_ids": self.generated_ids,
            "texts": self.texts, "iterations": self.iterations, "stop_reasons": self.stop_reasons,
            "n_tokens": self.n_tokens, "prefill_seconds": self.prefill_seconds,
            "decode_seconds": self.decode_seconds, "seconds": self.seconds, "tokens_per_s": self.tokens_per_s,
            "mean_iterations": self.mean_iterations, "cache_bytes": self.cache_bytes,
            "acceptance_rate": self.acceptance_rate, "speculative": self.speculative, "options": self.options,
            "parallel": self.parallel, "compile_seconds": self.compile_seconds, "depth": self.depth,
        }
