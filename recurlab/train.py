"""The explicit training loop: sampled depth, truncated backprop, eval per r, checkpoints.

    from recurlab.train import train
    train(RunDir("runs/cpu-1122-101500"), cfg, device="cpu")   # usually via recurlab.worker

Single process, or one rank of a torchrun job (DDP; FSDP with hardware.fsdp). The global batch,
learning rate and token counts do not depend on the world size: each rank takes a disjoint slice
of the step's global batch. Rank 0 alone writes the run directory.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import torch

from recurlab import environment
from recurlab.checkpoint import (load_optimizer, load_weights, optimizer_snapshot, read_state, remove_stale_temporaries,
                                 save_checkpoint)
from recurlab.config import RunConfig
from recurlab.data import encode_examples, make_data
from recurlab.depth_sampler import progressive_split, sample_depth
from recurlab.devices import resolve_device
from recurlab.distill import deep_logits, kl_to_teacher, load_teacher, self_distill_depth
from recurlab.distributed import Dist
from recurlab.errors import TrainingDiverged
from recurlab.families.retrofit import init_from_llama
from recurlab.flops import mfu, train_flops_per_token
from recurlab.heldout import evaluate_heldout
from recurlab.model import Block, RecurrentLM
from recurlab.rundir import RunDir, init_checkpoint
from recurlab.trackers import Trackers

HEARTBEAT_S = 2.0


def lr_at(cfg: RunConfig, step: int, elapsed: float = 0.0) -> float:
    """Warmup, then cosine decay over whichever budget is used up faster: steps or minutes."""
    t = cfg.train
    if t.warmup_steps and step <= t.warmup_steps:
        return t.lr * step / t.warmup_steps
    if t.schedule == "constant":
        return t.lr
    progress = (step - t.warmup_steps) / max(1, t.max_steps - t.warmup_steps)
    if t.max_minutes:
        progress = max(progress, elapsed / (60 * t.max_minutes))
    floor = t.lr * t.min_lr_ratio
    return floor + (t.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def build_optimizer(model: torch.nn.Module, cfg: RunConfig, device: torch.device) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    t = cfg.train
    return torch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2), fused=device.type == "cuda")


@dataclass
class Progress:
    step: int = 0
    tokens: int = 0
    elapsed: float = 0.0
    last_loss: float | None = None
    last_tps: float | None = None
    pending: list = field(default_factory=list)


class Trainer:
    def __init__(self, run: RunDir, cfg: RunConfig, device: str = "auto", dist: Dist | None = None, progress_bar=None,
                 log=None):
        self.run, self.cfg = run, cfg
        self.log = log or run.append_log  # worker.log (the worker's logger also echoes in the foreground)
        self.trackers = Trackers({}, self.log)
        self.dist = dist or Dist.single()
        self.device = self.dist.device if self.dist.group else torch.device(resolve_device(device or cfg.hardware.device))
        self.progress_bar = progress_bar
        if cfg.hardware.threads and self.device.type == "cpu":
            torch.set_num_threads(cfg.hardware.threads)
        torch.manual_seed(cfg.train.seed)
        self.data = make_data(cfg, run if self.dist.is_main else None)
        self.model = RecurrentLM(cfg.model).to(self.device)
        self.raw_model = self.model
        if cfg.hardware.compile:
            # compile each block, not the whole forward: the sampled iteration count changes
            # every step and would otherwise trigger recompiles
            for m in self.model.modules():
                if isinstance(m, Block):
                    m.compile()
        self.model = self.dist.wrap(self.model)
        self.teacher = load_teacher(cfg, self.device) if cfg.train.distill_from else None
        self.optimizer = build_optimizer(self.model, cfg, self.device)
        self.state = Progress()
        self.saved_step = -1  # tracked here, not read from disk: other machines may not see rank 0's files yet
        use_amp = self.device.type == "cuda" and cfg.hardware.dtype == "bfloat16"
        self.autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_amp else contextlib.nullcontext
        self.device_name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        if self.dist.is_main:
            environment.write(run, environment.collect(self.device_name, self.dist.world))

    # ---- resume ----------------------------------------------------------------------
    def restore(self) -> int:
        if self.dist.is_main:
            remove_stale_temporaries(self.run)
        ckpt = self.run.latest_checkpoint()
        if ckpt is None:
            self.init_from_source()
            if self.dist.is_main:
                self.run.truncate_metrics_after(0)  # starting over: the dead worker's rows would repeat
            return 0
        self.dist.load_weights(self.raw_model, self.model, ckpt.path, load_weights)
        self.dist.load_optimizer(self.model, self.optimizer, ckpt.path, load_optimizer)
        st = read_state(ckpt.path)
        self.state.step, self.state.tokens, self.state.elapsed = st["step"], st["tokens"], st.get("elapsed", 0.0)
        self.saved_step = self.state.step
        if self.dist.is_main:
            self.run.truncate_metrics_after(self.state.step)
        return self.state.step

    def init_from_source(self) -> None:
        """Retrofit: a fresh run starts from the chosen layers of model.init_from (the adapter stays fresh)."""
        if self.cfg.model.init_from:
            init_from_llama(self.raw_model, self.cfg.model)

    # ---- pieces of a step -----------------------------------------------------------
    def global_batch_slices(self) -> list[tuple[int, int]]:
        """(offset, size) micro-batches of this rank's slice of the global batch."""
        t = self.cfg.train
        per_rank = t.batch_size // self.dist.world
        start = self.dist.rank * per_rank
        micro = t.micro_batch or per_rank
        return [(start + o, min(micro, per_rank - o)) for o in range(0, per_rank, micro)]

    def pieces(self, step: int, slices: list[tuple[int, int]]) -> list[tuple]:
        """(idx, targets, n_no_grad, n_grad, level, seed offset) forward passes of this step.

        One per micro-batch; with train.depth_per_level one per (micro-batch, task level), since
        each level runs its own depth."""
        t, recurrent = self.cfg.train, self.cfg.model.is_recurrent
        if not t.depth_per_level:
            depth = sample_depth(t, step, t.seed, recurrent)
            return [(*self.data.train_batch(step, size, offset), *depth, None, offset) for offset, size in slices]
        out = []
        for offset, size in slices:
            examples = self.data.train_examples(step, size, offset)
            for level in sorted({ex.difficulty for ex in examples}):
                group = [ex for ex in examples if ex.difficulty == level]
                idx, tgt = encode_examples(group, self.data.tokenizer)
                # the seed offset keeps each group's latent start distinct from the other groups'
                out.append((idx, tgt, *sample_depth(t, step, t.seed, recurrent, level), level, offset * 1_009 + level))
        return out

    def train_step(self, step: int) -> dict:
        cfg, t = self.cfg, self.cfg.train
        lr = lr_at(cfg, step, self.state.elapsed)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        pieces = self.pieces(step, self.global_batch_slices())
        loss_sum, n_tokens, n_targets = torch.zeros((), device=self.device), 0, 0
        extra = {"r_sum": 0, "prog_loss": 0.0, "gain": 0.0, "kl": 0.0}
        # DDP and FSDP average gradients over ranks; weighting by world / global targets turns that
        # average into the token-weighted mean over the whole global batch, however it is split
        counts = [int((tgt != -100).sum()) for _, tgt, *_ in pieces]
        weight = self.dist.world / max(self.dist.sum_int(sum(counts)), 1)
        alpha = t.progressive_alpha
        sd_w = t.self_distill_weight  # self-distillation adds a pass (and a backward) per piece
        ckpt = cfg.hardware.activation_checkpointing
        for i, (idx, tgt, n_ng, n_g, level, offset) in enumerate(pieces):
            idx, tgt = idx.to(self.device, non_blocking=True), tgt.to(self.device, non_blocking=True)
            n_t = counts[i]
            # the latent start is seeded by the micro-batch's place in the global batch, not by
            # rank: 2 ranks x 8 sequences draw what 1 process with micro_batch 8 draws
            seed = t.seed * 1_000_003 + step * 65_537 + offset
            gen = torch.Generator(device=self.device).manual_seed(seed)
            last = i == len(pieces) - 1
            # each loss term gets its own backward, so that DDP sees one forward per backward and
            # synchronises gradients only after the step's very last one
            sync = self.dist.no_sync(self.model) if not (last and not alpha and not sd_w) else contextlib.nullcontext()
            with sync, self.autocast():
                out = self.model(idx, n_ng, n_g, tgt, activation_checkpointing=ckpt, generator=gen,
                                 jacobian_eps=t.jacobian_eps if t.jacobian_penalty else 0.0)
                base = out.loss
                if self.teacher is not None:
                    t_gen = torch.Generator(device=self.device).manual_seed(seed)
                    kl = kl_to_teacher(out.logits, self.teacher.logits(idx, t_gen), tgt)
                    base = (1 - t.distill_weight) * out.loss + t.distill_weight * kl
                    extra["kl"] += kl.item() * n_t
                objective = (1 - alpha) * base
                if out.gain is not None:
                    objective = objective + t.jacobian_penalty * out.gain
                    extra["gain"] += out.gain.item() * n_t
                (objective * n_t * weight).backward()
            if alpha:
                n, m = progressive_split(n_ng + n_g, t.k, step, t.seed, level)
                sync = self.dist.no_sync(self.model) if not last else contextlib.nullcontext()
                with sync, self.autocast():
                    # from the same latent start as the standard pass
                    gen = torch.Generator(device=self.device).manual_seed(seed)
                    prog = self.model(idx, n, m, tgt, activation_checkpointing=ckpt, generator=gen).loss
                    (alpha * prog * n_t * weight).backward()
                extra["prog_loss"] += prog.item() * n_t
            if sd_w:
                small = self_distill_depth(t.self_distill_small, step, t.seed)
                sync = self.dist.no_sync(self.model) if not (last and not alpha) else contextlib.nullcontext()
                with sync, self.autocast():
                    # both passes from the standard pass's latent start; the deep one is the fixed target
                    deep = deep_logits(self.model, idx, t.self_distill_large or 2 * t.r_mean,
                                       torch.Generator(device=self.device).manual_seed(seed))
                    gen = torch.Generator(device=self.device).manual_seed(seed)
                    shallow = self.model(idx, max(small - t.k, 0), min(t.k, small), generator=gen,
                                         activation_checkpointing=ckpt).logits
                    kl = kl_to_teacher(shallow, deep, tgt)
                    (sd_w * kl * n_t * weight).backward()
                extra["kl"] += kl.item() * n_t
            loss_sum += out.loss.detach() * n_t
            n_tokens += idx.numel()
            n_targets += n_t
            extra["r_sum"] += (n_ng + n_g) * n_t
        grad_norm = self.dist.clip_grad(self.model, cfg.train.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        local_targets = max(n_targets, 1)
        loss, n_targets, n_tokens = self.dist.reduce_loss(loss_sum, n_targets, n_tokens)
        row = {"loss": loss, "lr": lr, "tokens": n_tokens, "grad_norm": grad_norm, "seq_len": pieces[0][0].shape[1]}
        if t.depth_per_level:  # depths differ per level: report the split of the target-weighted mean depth
            r_total = round(extra["r_sum"] / local_targets)
            row.update(r_no_grad=max(r_total - t.k, 0), r_grad=min(t.k, r_total))
        else:
            row.update(r_no_grad=pieces[0][2], r_grad=pieces[0][3])
        # the two diagnostics are this rank's, not reduced over ranks
        if alpha:
            row["progressive_loss"] = extra["prog_loss"] / local_targets
        if t.jacobian_penalty:
            row["gain"] = extra["gain"] / local_targets
        if self.teacher is not None or sd_w:
            row["distill_kl"] = extra["kl"] / local_targets
        return row

    def evaluate(self, step: int) -> list[dict]:
        rows = []
        # sharded weights are gathered collectively, so under FSDP every rank runs the evaluation
        if self.dist.is_main or self.dist.sharded:
            for row in evaluate_heldout(self.raw_model, self.data, self.cfg.eval_rs, self.device, self.autocast()):
                rows.append({"kind": "eval", "step": step, "time": time.time(), **row})
        if not self.dist.is_main:
            rows = []
        self.dist.barrier()
        return rows

    def save(self, step: int) -> None:
        weights = self.dist.full_state_dict(self.raw_model, self.model)
        # a checkpoint is never written from broken weights: an update (lr = inf, say) can make them
        # NaN while the loss of the same step, computed before it, is still finite. Rank 0 holds the
        # whole state (gathered under FSDP) and tells the others.
        broken = self.dist.is_main and not all(bool(torch.isfinite(t).all()) for t in weights.values())
        if self.dist.any_flag(broken):
            self.diverged(f"the weights became NaN or infinite in the update of step {step}")
        opt = self.dist.optimizer_state(self.model, self.optimizer, optimizer_snapshot)
        if self.dist.is_main:
            s = self.state
            ckpt = save_checkpoint(
                self.run, step, weights, opt,
                {"tokens": s.tokens, "elapsed": s.elapsed, "world_size": self.dist.world, "seed": self.cfg.train.seed},
                keep=self.cfg.train.keep_checkpoints,
            )
            self.run.write_status(last_checkpoint=ckpt.name)
        self.saved_step = step
        self.dist.barrier()

    def diverged(self, what: str) -> None:
        """Stop as failed: keep the finite metrics, record the last good step and loss, write nothing more."""
        s = self.state
        self.flush()
        last = f"last finite loss {s.last_loss:.6g} at step {s.step}" if s.last_loss is not None else "no finite loss since this worker started"
        if self.dist.is_main:
            ckpt = self.run.latest_checkpoint()
            self.run.write_status(step=s.step, loss=s.last_loss, tokens=s.tokens)
            kept = f"the last checkpoint ({ckpt.path.name}) is intact" if ckpt is not None else "no checkpoint was written"
        else:
            kept = "the last checkpoint is intact"
        raise TrainingDiverged(f"{what} ({last}); {kept}; lower train.lr or fix the profile's numbers")

    # ---- the loop --------------------------------------------------------------------
    def fit(self, resume: bool = False) -> str:
        cfg, run, s = self.cfg, self.run, self.state
        if resume:
            self.restore()
        else:
            self.init_from_source()
        if s.step == 0 and cfg.train.init_from:  # a warm start: weights only; optimizer and schedule start afresh
            self.dist.load_weights(self.raw_model, self.model, init_checkpoint(cfg.train.init_from), load_weights)
        main = self.dist.is_main
        if main:  # after restore: a resume's trackers continue from the checkpoint's step
            self.trackers = Trackers.open(run, cfg, s.step if resume else None, self.log)
        try:
            return self._loop()
        finally:
            self.trackers.close()

    def _loop(self) -> str:
        cfg, run, s = self.cfg, self.run, self.state
        main = self.dist.is_main
        if main:
            run.write_status(state="running", step=s.step, max_steps=cfg.train.max_steps, tokens=s.tokens,
                             device=self.device_name, world_size=self.dist.world, heartbeat=time.time(),
                             params=self.raw_model.num_params())
        last_beat = last_flush = time.time()
        t_window, tok_window = time.perf_counter(), 0
        outcome = "finished"
        self.model.train()
        budget_s = 60 * cfg.train.max_minutes
        fit_start, elapsed_before = time.perf_counter(), s.elapsed
        while s.step < cfg.train.max_steps:
            if self.dist.any_flag(main and run.stop_requested()):
                outcome = "stopped"
                break
            step = s.step + 1
            t0 = time.perf_counter()
            m = self.train_step(step)
            if not math.isfinite(m["loss"]):  # the same on every rank: the loss is reduced over them
                self.diverged(f"the loss is {m['loss']} at step {step}")
            dt = time.perf_counter() - t0
            s.step, s.tokens = step, s.tokens + m["tokens"]
            # wall time of the whole run (evals and checkpoints included), carried across resumes
            s.elapsed = elapsed_before + time.perf_counter() - fit_start
            if budget_s:  # the lr then follows the clock: every rank must use rank 0's, or replicas drift apart
                s.elapsed = self.dist.from_main(s.elapsed)
            out_of_time = bool(budget_s) and self.dist.any_flag(s.elapsed >= budget_s)
            tok_window += m["tokens"]
            s.last_loss = m["loss"]
            if main:
                flops = train_flops_per_token(cfg.model, m["r_no_grad"], m["r_grad"], m["seq_len"])
                row = {"kind": "train", "step": step, "time": time.time(), "loss": m["loss"], "lr": m["lr"],
                       "r_no_grad": m["r_no_grad"], "r_grad": m["r_grad"], "seq_len": m["seq_len"], "tokens": s.tokens,
                       "tokens_per_s": m["tokens"] / dt, "grad_norm": m["grad_norm"], "step_time": dt}
                row.update({key: m[key] for key in ("progressive_loss", "gain", "distill_kl") if key in m})
                u = mfu(flops * m["tokens"] / dt / self.dist.world, self.device_name, cfg.hardware.peak_tflops)  # per device
                if u is not None:
                    row["mfu"] = u
                s.pending.append(row)
            last = step == cfg.train.max_steps or out_of_time
            if step % cfg.train.eval_every == 0 or last:
                s.pending.extend(self.evaluate(step))
            if step % cfg.train.checkpoint_every == 0 or last:
                self.flush()
                self.save(step)
            now = time.time()
            if main and (now - last_flush > 1.0 or step % cfg.train.log_every == 0):
                self.flush()
                last_flush = now
            if main and now - last_beat > HEARTBEAT_S:
                elapsed = time.perf_counter() - t_window
                s.last_tps = tok_window / max(elapsed, 1e-9)
                t_window, tok_window = time.perf_counter(), 0
                run.write_status(heartbeat=now, step=step, tokens=s.tokens, loss=s.last_loss, tokens_per_s=s.last_tps)
                last_beat = now
            if self.progress_bar is not None and main:
                self.progress_bar(step, cfg.train.max_steps, s.last_loss)
            if out_of_time:
                break
        self.flush()
        if outcome == "stopped" and self.saved_step != s.step:
            self.save(s.step)
        if main:
            if outcome == "stopped":
                run.clear_stop()
            run.write_status(state=outcome, step=s.step, tokens=s.tokens, loss=s.last_loss, heartbeat=time.time(),
                             ended=time.time())
        return outcome

    def flush(self) -> None:
        if self.dist.is_main and self.state.pending:
            self.run.append_metrics(self.state.pending)
            self.trackers.log(self.state.pending)  # copies, after metrics.jsonl has them
            self.state.pending = []


def train(run: RunDir, cfg: RunConfig, device: str = "auto", resume: bool = False, progress_bar=None, log=None) -> str:
    dist = Dist.from_env(cfg, device)
    try:
        return Trainer(run, cfg, device, dist, progress_bar, log).fit(resume=resume)
    finally:
        dist.close()
