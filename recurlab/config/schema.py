"""The typed run configuration: one dataclass per section of a profile (model, data, train,
hardware) and the RunConfig that holds them. Plain data with defaults; reading, coercing and
checking live beside it (profiles, coerce, validation).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


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
