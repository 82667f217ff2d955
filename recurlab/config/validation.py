"""Checking a run configuration: `validate` rejects impossible values with one line each and
fills the values derived from others (the vocabulary size, the matched baseline's depth).
"""

from __future__ import annotations

from recurlab.config.coerce import short_repr
from recurlab.config.schema import RunConfig
from recurlab.errors import ConfigError

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
    need(0 <= t.seed < 2**63, f"train.seed must be in [0, 2^63), got {short_repr(t.seed)}")
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
        # not at start-up: every command imports config, and only a task profile needs the tasks
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
