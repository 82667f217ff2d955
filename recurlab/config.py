"""Typed run configuration: profiles (YAML) plus `key=value` overrides, validated.

    from recurlab.config import load_profile
    cfg = load_profile("tiny", ["train.max_steps=50", "model.n_embd=64"])

Every user-facing mistake raises `ConfigError` with one line that names the key and
what is allowed; the CLI prints that line and exits with code 2.
This module imports no torch so that the CLI and the TUI start fast.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from recurlab.errors import ConfigError  # re-exported: callers catch recurlab.config.ConfigError

# built-in profiles are package data, so that every install (not only an editable one) has them
BUILTIN_PROFILES = Path(__file__).resolve().parent / "profiles"

ARCHS = ("recurrent", "fixed_depth", "fixed_depth_matched", "token_recurrent")
SAMPLERS = ("lognormal_poisson", "fixed", "uniform", "curriculum")
SCHEDULES = ("cosine", "constant")
DTYPES = ("float32", "bfloat16")
SOURCES = ("task", "hub", "local")
BLOCKS = ("sandwich", "peri", "prenorm")
ROTARY = ("pairs", "half")
INJECTIONS = ("adapter", "none")
STATE_INITS = ("random", "embedding")
TRACKERS = ("tensorboard", "wandb")  # recurlab/trackers.py



@dataclass
class ModelConfig:
    arch: str = "recurrent"
    vocab_size: int = 0  # 0: taken from the task vocabulary or the tokenizer
    n_embd: int = 128
    n_head: int = 4
    n_prelude: int = 1
    n_core: int = 2
    n_coda: int = 1
    intermediate_size: int = 0  # 0: 4 * n_embd, rounded to a multiple of 16
    block_size: int = 256
    rope_base: float = 10000.0
    qk_bias: bool = False
    embed_scale: float = 1.0
    init_scale: float = 1.0  # std of the random latent start; 0 starts at zeros
    norm_eps: float = 1e-6
    matched_r: int = 0  # fixed_depth_matched: core layers = n_core * matched_r (0: train.r_mean)
    # ---- family options (the defaults are recurlab's own models and Huginn-0125) ----
    block: str = "sandwich"  # sandwich: n2(x + f(n1 x)); peri (Ouro): x + n2(f(n1 x)); prenorm (Llama): x + f(n1 x)
    n_kv_head: int = 0  # key/value heads for grouped-query attention (0: n_head, plain multi-head)
    rotary: str = "pairs"  # pairs: rotate adjacent channels (Huginn); half: rotate the two halves (Llama, Ouro)
    injection: str = "adapter"  # adapter: s = Core(A[s; e]); none: s = Core(s) (Ouro)
    state_init: str = "random"  # random (init_scale 0: zeros), or embedding: start from e (Ouro)
    step_norm: bool = False  # ln_f after every core step, feeding the next one (Ouro)
    coda_norm: bool = True  # ln_f on the last state before the coda (Huginn)
    final_norm: bool = True  # ln_f after the coda, before the head
    tie_head: bool = True  # the head shares the embedding matrix
    exit_gate: bool = False  # a learned exit gate lambda = sigmoid(w . s + b) after every step (Ouro)
    init_from: str = ""  # retrofit: a Llama-format Hugging Face folder whose layers start the model
    layers: str = ""  # retrofit: source layer ranges prelude,core,coda, e.g. 0-3,10-17,18-21

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def mlp_size(self) -> int:
        if self.intermediate_size:
            return self.intermediate_size
        return ((4 * self.n_embd + 15) // 16) * 16

    @property
    def is_recurrent(self) -> bool:
        return self.arch in ("recurrent", "token_recurrent")

    @property
    def n_core_layers(self) -> int:
        """Distinct core layers: R for recurrent models, more for the matched baseline."""
        if self.arch == "fixed_depth_matched":
            return self.n_core * max(self.matched_r, 1)
        return self.n_core


@dataclass
class DataConfig:
    source: str = "task"
    # embedded synthetic tasks
    task: str = "addition"
    difficulties: list[int] = field(default_factory=lambda: [2, 4, 6, 8])
    train_difficulties: list[int] = field(default_factory=list)  # empty: all of `difficulties`
    eval_examples: int = 256  # held-out examples per difficulty
    identity_pad_to: int = 0  # permutation tasks: pad training prompts with identities to up to this many (0: off)
    # real text (hub or local files)
    name: str = ""  # hub dataset name, or a local file / folder for source=local
    subset: str = ""
    split: str = "train"
    streaming: bool = True
    text_field: str = "text"
    template: str = ""  # e.g. "{question}\n{generated_solution}"; overrides text_field
    seq_len: int = 256
    tokenizer: str = ""  # path to an existing tokenizer.json; empty: train a BPE
    tokenizer_vocab: int = 8192
    tokenizer_sample_docs: int = 20000
    val_fraction: float = 0.01
    max_docs: int = 0  # 0: no limit
    cache_dir: str = ""  # empty: ~/.cache/recurlab


@dataclass
class TrainConfig:
    sampler: str = "lognormal_poisson"
    r_mean: int = 8
    k: int = 4  # iterations with gradient (truncated backprop depth)
    sigma: float = 0.5
    r_min: int = 1  # uniform sampler
    r_max: int = 16  # uniform sampler
    curriculum_steps: int = 0  # curriculum: steps to ramp r_mean from 1 to r_mean
    # extrapolation options (0 = off, today's recipe)
    depth_per_level: float = 0.0  # >0: each task level draws its own depth around depth_per_level * level (Fan et al.)
    progressive_alpha: float = 0.0  # >0: mix in the progressive loss with this weight (Bansal et al.)
    jacobian_penalty: float = 0.0  # >0: weight of the recurrence's finite-difference contraction penalty
    jacobian_eps: float = 0.01  # size of the state perturbation the penalty measures, relative to the state's norm
    init_from: str = ""  # warm start: weights of this run's latest checkpoint (or a checkpoint dir); fresh optimizer, step 0
    # distillation toward a deeper pass (recurlab/distill.py); 0 / "" = off
    distill_from: str = ""  # a teacher run (or one of its checkpoints): (1 - w) CE + w KL(teacher || student)
    distill_r: int = 0  # the teacher's iterations (0: the teacher's train.r_mean)
    distill_weight: float = 0.5  # w, for a teacher run
    self_distill_weight: float = 0.0  # >0: add w KL(model at self_distill_large || model at r ~ U{1..self_distill_small})
    self_distill_small: int = 2
    self_distill_large: int = 0  # 0: 2 x train.r_mean
    batch_size: int = 64  # global batch in sequences, independent of the number of processes
    micro_batch: int = 0  # per-process micro batch for gradient accumulation (0: no accumulation)
    max_steps: int = 1000
    max_minutes: float = 0.0  # wall-clock budget (0: none); the schedule then follows the budget used
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    schedule: str = "cosine"
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_every: int = 200
    eval_r: list[int] = field(default_factory=list)  # empty: 1, r_mean/2, r_mean, 2*r_mean
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 10
    seed: int = 0


@dataclass
class HardwareConfig:
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    dtype: str = "float32"  # autocast dtype on CUDA
    compile: bool = False
    threads: int = 0  # torch CPU threads (0: torch default)
    activation_checkpointing: bool = False
    fsdp: bool = False
    gpu_memory_gb: float = 0.0  # documentation of the profile's target; not enforced
    peak_tflops: float = 0.0  # the device's peak for MFU (0: by device name, recurlab/flops.py; none on CPU)
    trackers: list[str] = field(default_factory=list)  # extra sinks of the metric rows: tensorboard, wandb
    wandb_project: str = "recurlab"  # the W&B project of runs with trackers [wandb]


@dataclass
class RunConfig:
    profile: str = "custom"
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def eval_rs(self) -> list[int]:
        if self.train.eval_r:
            return list(self.train.eval_r)
        if not self.model.is_recurrent:
            return [1]
        r = self.train.r_mean
        return sorted({1, max(r // 2, 1), r, 2 * r})


SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "hardware": HardwareConfig}
TOP_SCALARS = ("profile", "description")


def _allowed(cls) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def _coerce(key: str, value, typ):
    """Convert `value` (from YAML or a command-line string) to `typ`, or raise ConfigError."""
    origin = typing.get_origin(typ)
    if origin is list:
        (inner,) = typing.get_args(typ)
        if isinstance(value, str):
            items = value.replace(" ", "").split(",") if value.strip() else []
            if "" in items:
                raise ConfigError(f"{key}: {value!r} has an empty item; list the values with one comma between each, "
                                  f"e.g. {key}=1,2,4")
            value = items
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list of {inner.__name__} (e.g. {key}=1,2,4), got {value!r}")
        return [_coerce(key, v, inner) for v in value]
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if typ is int:
        return _in_int64(key, _coerce_int(key, value))
    if typ is float:
        number = _coerce_float(key, value)
        if not math.isfinite(number):  # nan and inf train to nan, or never stop
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return number
    if typ is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return "" if value is None else str(value)
    raise ConfigError(f"{key}: unsupported type")


def _coerce_int(key: str, value) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.replace("_", ""))
        except ValueError:  # also more digits than Python converts
            pass
    raise ConfigError(f"{key}: expected an integer, got {_short(value)}")


def _in_int64(key: str, number: int) -> int:
    """Every integer of a profile ends up in torch or numpy, which hold 64 bits."""
    if not -(2**63) <= number < 2**63:
        raise ConfigError(f"{key}: {_short(number)} does not fit in 64 bits; give a smaller value")
    return number


def _coerce_float(key: str, value) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(f"{key}: {_short(value)} is too large for a number; give a smaller value") from None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ConfigError(f"{key}: expected a number, got {_short(value)}")


def _short(value) -> str:
    """repr() of a value for an error line, cut so that a 5000-digit number stays one short line."""
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 10_000 else f"a {value.bit_length()}-bit integer"
    return text if len(text) <= 60 else text[:40] + f"... ({len(text)} characters)"


def _field_types(cls) -> dict:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _set(cfg: RunConfig, dotted: str, value) -> None:
    parts = _resolve_key(dotted)
    if len(parts) == 1:
        setattr(cfg, parts[0], _coerce(dotted, value, str))
        return
    section, key = parts
    setattr(getattr(cfg, section), key, _coerce(dotted, value, _field_types(SECTIONS[section])[key]))


def _resolve_key(dotted: str) -> list[str]:
    """[top-level key] or [section, key] for a dotted key; a bare key names the one section that has it."""
    parts = dotted.split(".")
    if len(parts) == 1 and parts[0] in TOP_SCALARS:
        return parts
    if len(parts) == 1:
        # a bare key is accepted when exactly one section has it: `r_mean=16`
        owners = [s for s, cls in SECTIONS.items() if parts[0] in _field_types(cls)]
        if len(owners) != 1:
            hint = f"one of model.*, data.*, train.*, hardware.* ({_allowed_sections()})"
            if len(owners) > 1:
                hint = " or ".join(f"{o}.{parts[0]}" for o in owners)
            raise ConfigError(f"unknown key {dotted!r}: use {hint}")
        parts = [owners[0], parts[0]]
    if len(parts) != 2 or parts[0] not in SECTIONS:
        raise ConfigError(f"unknown key {dotted!r}: sections are {', '.join(SECTIONS)} (e.g. train.r_mean=16)")
    section, key = parts
    if key not in _field_types(SECTIONS[section]):
        raise ConfigError(f"unknown key {dotted!r}: {section} has {_allowed(SECTIONS[section])}")
    return parts


def _allowed_sections() -> str:
    return "sections " + ", ".join(SECTIONS)


def from_dict(data: dict, source: str = "config") -> RunConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections (model, data, train, hardware)")
    cfg = RunConfig()
    for top, value in data.items():
        if top in TOP_SCALARS:
            _set(cfg, top, value)
        elif top in SECTIONS:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: section {top!r} must be a mapping of keys")
            for key, v in value.items():
                _set(cfg, f"{top}.{key}", v)
        else:
            raise ConfigError(
                f"{source}: unknown section {top!r}: allowed are {', '.join(TOP_SCALARS + tuple(SECTIONS))}"
            )
    return cfg


def validate(cfg: RunConfig) -> RunConfig:
    """Fill derived values and reject impossible ones. Returns the same object."""
    m, t, d, h = cfg.model, cfg.train, cfg.data, cfg.hardware

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ConfigError(msg)

    need(m.arch in ARCHS, f"model.arch: {m.arch!r} is not one of {', '.join(ARCHS)}")
    need(t.sampler in SAMPLERS, f"train.sampler: {t.sampler!r} is not one of {', '.join(SAMPLERS)}")
    need(t.schedule in SCHEDULES, f"train.schedule: {t.schedule!r} is not one of {', '.join(SCHEDULES)}")
    need(h.peak_tflops >= 0, f"hardware.peak_tflops must be >= 0 (0: known GPUs by name), got {h.peak_tflops}")
    bad = [x for x in h.trackers if x not in TRACKERS]
    need(not bad, f"hardware.trackers: {', '.join(map(repr, bad))} is not one of {', '.join(TRACKERS)} "
                  f"(e.g. hardware.trackers=tensorboard,wandb)")
    need(h.dtype in DTYPES, f"hardware.dtype: {h.dtype!r} is not one of {', '.join(DTYPES)}")
    need(d.source in SOURCES, f"data.source: {d.source!r} is not one of {', '.join(SOURCES)}")
    need(m.n_embd > 0 and m.n_head > 0, "model.n_embd and model.n_head must be positive")
    need(m.n_embd % m.n_head == 0, f"model.n_embd ({m.n_embd}) must be divisible by model.n_head ({m.n_head})")
    need(m.head_dim % 2 == 0, f"model.n_embd / model.n_head must be even for rotary positions, got {m.head_dim}")
    for key, value, allowed in (("block", m.block, BLOCKS), ("rotary", m.rotary, ROTARY),
                                ("injection", m.injection, INJECTIONS), ("state_init", m.state_init, STATE_INITS)):
        need(value in allowed, f"model.{key}: {value!r} is not one of {', '.join(allowed)}")
    need(m.n_kv_head >= 0 and m.n_head % m.kv_heads == 0,
         f"model.n_kv_head ({m.n_kv_head}) must divide model.n_head ({m.n_head}) (0: same as n_head)")
    need(not (m.qk_bias and m.kv_heads != m.n_head), "model.qk_bias needs multi-head attention (model.n_kv_head=0)")
    need(m.injection == "adapter" or m.state_init == "embedding",
         "model.injection=none needs model.state_init=embedding: without an adapter the input enters only as the start state")
    need(not m.layers or bool(m.init_from),
         "model.layers picks layers of a source model: set model.init_from=PATH to a Llama-format folder")
    need(m.n_prelude >= 0 and m.n_coda >= 0, "model.n_prelude and model.n_coda must be >= 0")
    need(m.n_core >= 1, f"model.n_core must be >= 1, got {m.n_core}")
    need(m.block_size >= 2, f"model.block_size must be >= 2, got {m.block_size}")
    need(m.init_scale >= 0, f"model.init_scale must be >= 0 (0 = zero start), got {m.init_scale}")
    need(m.rope_base > 1, f"model.rope_base must be > 1 (the rotary frequencies' base, e.g. 10000), got {m.rope_base}")
    need(m.norm_eps > 0, f"model.norm_eps must be > 0, got {m.norm_eps}")
    need(m.embed_scale > 0, f"model.embed_scale must be > 0, got {m.embed_scale}")
    need(t.r_mean >= 1, f"train.r_mean must be >= 1, got {t.r_mean}")
    need(t.k >= 1, f"train.k must be >= 1, got {t.k}")
    need(t.k <= t.r_mean, f"train.k ({t.k}) must be <= train.r_mean ({t.r_mean})")
    need(t.sigma > 0, f"train.sigma must be > 0, got {t.sigma}")
    need(1 <= t.r_min <= t.r_max, f"train.r_min/r_max must satisfy 1 <= r_min <= r_max, got {t.r_min}, {t.r_max}")
    need(t.depth_per_level >= 0, f"train.depth_per_level must be >= 0 (0 = one depth per step), got {t.depth_per_level}")
    need(0 <= t.progressive_alpha <= 1, f"train.progressive_alpha must be in [0, 1] (0 = off), got {t.progressive_alpha}")
    need(t.jacobian_penalty >= 0, f"train.jacobian_penalty must be >= 0 (0 = off), got {t.jacobian_penalty}")
    need(t.jacobian_eps > 0, f"train.jacobian_eps must be > 0, got {t.jacobian_eps}")
    need(t.distill_r >= 0, f"train.distill_r must be >= 0 (0 = the teacher's r_mean), got {t.distill_r}")
    need(0 <= t.distill_weight <= 1, f"train.distill_weight must be in [0, 1], got {t.distill_weight}")
    need(t.self_distill_weight >= 0, f"train.self_distill_weight must be >= 0 (0 = off), got {t.self_distill_weight}")
    need(t.self_distill_small >= 1, f"train.self_distill_small must be >= 1, got {t.self_distill_small}")
    need(t.self_distill_large >= 0, f"train.self_distill_large must be >= 0 (0 = 2 x r_mean), got {t.self_distill_large}")
    if t.self_distill_weight:
        need(m.is_recurrent, f"train.self_distill_weight needs a recurrent model, not model.arch={m.arch}")
        large = t.self_distill_large or 2 * t.r_mean
        need(large > t.self_distill_small, f"train.self_distill_large ({large}) must exceed train.self_distill_small "
                                           f"({t.self_distill_small}): the deep pass is the target")
        need(not t.distill_from, "train.distill_from and train.self_distill_weight are two modes; pick one")
    if t.depth_per_level:
        need(d.source == "task", "train.depth_per_level needs an embedded task (data.source=task): text has no levels")
        need(t.sampler != "uniform", "train.depth_per_level works with the fixed, lognormal_poisson and curriculum "
                                     "samplers, not uniform (its r_min/r_max do not scale with the level)")
    if t.depth_per_level or t.progressive_alpha or t.jacobian_penalty:
        need(m.is_recurrent, f"train.depth_per_level, progressive_alpha and jacobian_penalty need a recurrent model, "
                             f"not model.arch={m.arch}")
    need(t.batch_size >= 1, f"train.batch_size must be >= 1, got {t.batch_size}")
    need(t.micro_batch >= 0, f"train.micro_batch must be >= 0, got {t.micro_batch}")
    if t.micro_batch:
        need(
            t.batch_size % t.micro_batch == 0,
            f"train.batch_size ({t.batch_size}) must be divisible by train.micro_batch ({t.micro_batch})",
        )
    need(t.max_steps >= 1, f"train.max_steps must be >= 1, got {t.max_steps}")
    need(t.max_minutes >= 0, f"train.max_minutes must be >= 0 (0 = no time limit), got {t.max_minutes}")
    need(t.lr > 0, f"train.lr must be > 0, got {t.lr}")
    need(t.weight_decay >= 0, f"train.weight_decay must be >= 0 (0 = off), got {t.weight_decay}")
    need(0 <= t.beta1 < 1 and 0 <= t.beta2 < 1, f"train.beta1 and train.beta2 must be in [0, 1) (AdamW's moment decay), "
                                                f"got {t.beta1}, {t.beta2}")
    need(0 <= t.seed < 2**63, f"train.seed must be in [0, 2^63), got {_short(t.seed)}")
    need(0 <= t.min_lr_ratio <= 1, f"train.min_lr_ratio must be in [0, 1], got {t.min_lr_ratio}")
    need(t.warmup_steps >= 0, f"train.warmup_steps must be >= 0, got {t.warmup_steps}")
    need(t.eval_every >= 1 and t.checkpoint_every >= 1 and t.log_every >= 1,
         "train.eval_every, train.checkpoint_every and train.log_every must be >= 1")
    need(t.keep_checkpoints >= 1, f"train.keep_checkpoints must be >= 1, got {t.keep_checkpoints}")
    need(all(r >= 1 for r in t.eval_r), f"train.eval_r: every r must be >= 1, got {t.eval_r}")
    need(t.grad_clip >= 0, f"train.grad_clip must be >= 0 (0 = off), got {t.grad_clip}")
    need(h.threads >= 0, f"hardware.threads must be >= 0, got {h.threads}")
    need(h.device == "auto" or h.device == "cpu" or h.device.startswith("cuda"),
         f"hardware.device: {h.device!r} is not auto, cpu, cuda or cuda:N")
    if d.source == "task":
        need(len(d.difficulties) > 0, "data.difficulties must list at least one level, e.g. data.difficulties=2,4,6")
        need(all(x >= 1 for x in d.difficulties), f"data.difficulties must all be >= 1, got {d.difficulties}")
        need(d.eval_examples >= 1, f"data.eval_examples must be >= 1, got {d.eval_examples}")
        if d.identity_pad_to:
            need(d.task.startswith("permutation"), f"data.identity_pad_to applies to the permutation tasks, not {d.task!r}")
            need(d.identity_pad_to >= 1, f"data.identity_pad_to must be >= 1 (0 = off), got {d.identity_pad_to}")
    else:
        need(bool(d.name), f"data.name: data.source={d.source} needs a dataset name or a local path")
        need(d.seq_len >= 2, f"data.seq_len must be >= 2, got {d.seq_len}")
        need(0 < d.val_fraction < 1, f"data.val_fraction must be in (0, 1), got {d.val_fraction}")
    if m.arch == "fixed_depth_matched" and m.matched_r == 0:
        m.matched_r = t.r_mean
    if d.source == "task":
        from recurlab.tasks import CharVocab, UnknownTaskError, check_levels, get_task, levels_problem

        try:
            task = get_task(d.task)
        except UnknownTaskError as exc:
            raise ConfigError(f"data.task: {exc}") from None
        for key, levels in (("data.difficulties", d.difficulties), ("data.train_difficulties", d.train_difficulties)):
            problem = levels_problem(task, levels, m.block_size, d.identity_pad_to)
            need(problem is None, f"{key}: {problem}")
        try:
            check_levels(task, d.difficulties)
        except UnknownTaskError as exc:  # a level without held-out prompts
            raise ConfigError(f"data.task: {exc}") from None
        m.vocab_size = len(CharVocab.default())
    elif m.vocab_size == 0:
        m.vocab_size = d.tokenizer_vocab
    return cfg


def profile_dirs() -> list[Path]:
    """Where profiles are found, first match wins: ./profiles (the user's own), the checkout's
    top-level profiles/ when recurlab runs from a source tree, then the built-in ones."""
    checkout = BUILTIN_PROFILES.parent.parent
    dirs = [Path.cwd() / "profiles"]
    if (checkout / "pyproject.toml").is_file():
        dirs.append(checkout / "profiles")
    dirs.append(BUILTIN_PROFILES)
    out = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def profile_names() -> list[str]:
    return sorted({p.stem for d in profile_dirs() for p in d.glob("*.yaml")})


def profile_path(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    for d in profile_dirs():
        path = d / f"{name}.yaml"
        if path.is_file():
            return path
    raise ConfigError(f"unknown profile {name!r}: available are {', '.join(profile_names())} (or a path to a .yaml)")


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen = {}
    for key_node, _value in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise _DuplicateKey(key, seen[key], key_node.start_mark.line + 1)
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


class _DuplicateKey(Exception):
    def __init__(self, key, first: int, again: int):
        super().__init__(key)
        self.key, self.first, self.again = key, first, again


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_yaml(path: Path) -> dict:
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except _DuplicateKey as dup:
        raise ConfigError(f"{path}: line {dup.again}: key {dup.key!r} is given twice (first on line {dup.first}); "
                          "keep one of them") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)}); fix the file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text, so it is not a profile; fix or remove the file") from None
    except ValueError as exc:  # a scalar YAML cannot build, e.g. an integer of more digits than Python converts
        raise ConfigError(f"{path} is not valid YAML ({str(exc).splitlines()[0][:80]}); fix the file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    return data or {}


def parse_overrides(overrides: list[str]) -> list[tuple[str, str]]:
    """(key, value) pairs; a key given twice (also as `r_mean` and `train.r_mean`) is refused, as
    a key given twice in a profile file is."""
    pairs, seen = [], {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value or section.key=value")
        key, value = item.split("=", 1)
        key = key.strip()
        where = ".".join(_resolve_key(key))
        if where in seen:
            raise ConfigError(f"{where} is given twice on the command line ({seen[where]!r} and {item!r}); keep one of them")
        seen[where] = item
        pairs.append((key, value.strip()))
    return pairs


def _list_value(key: str, value: str):
    """A YAML flow list given on the command line, `data.difficulties=[2,4]`."""
    try:
        return yaml.safe_load(value)
    except (yaml.YAMLError, ValueError):
        raise ConfigError(f"{key}: {value!r} is not a list; write {key}=1,2,4 or {key}=[1,2,4]") from None


def read_profile(name: str, overrides: list[str] | None = None) -> RunConfig:
    """The profile `name` with its overrides, not yet validated: for a caller that shapes it
    further before `validate` (a new run's retrofit model, recurlab.lifecycle.resolve_profile)."""
    path = profile_path(name)
    cfg = from_dict(load_yaml(path), source=str(path))
    cfg.profile = path.stem
    for key, value in parse_overrides(overrides or []):
        _set(cfg, key, _list_value(key, value) if value.startswith("[") else value)
    return cfg


def load_profile(name: str, overrides: list[str] | None = None) -> RunConfig:
    return validate(read_profile(name, overrides))


# r values offered by default reach R_REACH x r_mean: past the training depth, where a model that
# cannot extrapolate in depth would show its collapse
R_REACH = 4


def default_rs(r_mean: int) -> list[int]:
    """The default r values of a sweep: powers of two up to R_REACH x r_mean."""
    rs = [1]
    while rs[-1] * 2 <= R_REACH * max(r_mean, 1):
        rs.append(rs[-1] * 2)
    return rs


def slider_max_r(r_mean: int) -> int:
    """The top of an r slider (Generate, Inspector): R_REACH x r_mean, at least 8."""
    return max(R_REACH * r_mean, 8)


def run_config(run) -> RunConfig:
    """The validated config of a run directory (its run.yaml); raises RunError naming the run.
    Here, beside the dataclasses, so that readers of a run's config never import torch."""
    from recurlab.rundir import RunError

    try:
        return validate(from_dict(load_yaml(run.config_path), source=str(run.config_path)))
    except ConfigError as exc:
        raise RunError(f"run {run.name}: {exc}") from None


def to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
