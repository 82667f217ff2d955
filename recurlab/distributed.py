"""Process-group plumbing for the training loop: one process, or a rank under torchrun.

    dist = Dist.from_env(cfg, device)     # reads RANK / WORLD_SIZE / LOCAL_RANK set by torchrun
    model = dist.wrap(model)              # DDP (or FSDP with hardware.fsdp) under torchrun
    torchrun_command("runs/h100-1122", nproc=8)   # the launcher line `recurlab train --nproc 8` runs

Everything the loop needs to know about other ranks goes through this object, so the loop reads
the same for one process and for many. Checkpoints are the single-process format whatever the
wrapping: full weights and the optimizer state keyed by parameter index, gathered on rank 0, so a
run can resume with any number of processes, with or without FSDP.

Several machines: start the same torchrun line on every machine with `--nnodes N
--rdzv-endpoint HOST:PORT` (HOST is one of them, reachable from all); the run directory must be
on a filesystem that every machine sees at the same path (rank 0 writes it, every rank reads the
config and the checkpoint it resumes from).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass

import torch
import torch.distributed as tdist

from recurlab.config import ConfigError
from recurlab.model import Block

PR_SET_PDEATHSIG = 1


def check_world_size(cfg, world: int) -> None:
    """The global batch is split evenly over the ranks, so it must divide by their number."""
    if world > 1 and cfg.train.batch_size % world:
        raise ConfigError(
            f"train.batch_size ({cfg.train.batch_size}) must be divisible by the number of processes ({world}); "
            f"change train.batch_size or --nproc"
        )


def torchrun_command(run_dir, nproc: int = 1, nnodes: int = 1, rdzv_endpoint: str = "", resume: bool = False,
                     device: str = "") -> list[str]:
    """The torchrun line that runs the worker for `run_dir` (the same line on every machine)."""
    if nproc < 1 or nnodes < 1:
        raise ConfigError(f"--nproc and --nnodes must be >= 1, got {nproc} and {nnodes}")
    if nnodes > 1 and not rdzv_endpoint:
        raise ConfigError(f"--nnodes {nnodes} needs --rdzv-endpoint HOST:PORT (a machine of the job, reachable from all)")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
    if nnodes == 1 and not rdzv_endpoint:
        cmd.append("--standalone")  # local rendezvous on a free port
    else:
        run_id = os.path.basename(os.path.normpath(str(run_dir)))
        cmd += ["--nnodes", str(nnodes), "--rdzv_backend", "c10d", "--rdzv_endpoint", rdzv_endpoint, "--rdzv_id", run_id]
    cmd += ["-m", "recurlab.worker", str(run_dir)]
    if resume:
        cmd.append("--resume")
    if device:
        cmd += ["--device", device]
    return cmd


def follow_launcher(launcher_pid: int) -> None:
    """End this rank when the torchrun launcher dies.

    torchrun starts each rank in a session of its own, so killing the launcher's process group
    (`recurlab stop --now`) or the launcher alone would leave the ranks running. The run's status
    records the launcher's pid; tying every rank's life to it keeps "that pid is gone" meaning
    "the job is gone".
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    else:
        threading.Thread(target=_exit_when_orphaned, args=(launcher_pid,), daemon=True).start()
    if os.getppid() != launcher_pid:  # it died before the line above took effect
        os._exit(1)


def _exit_when_orphaned(launcher_pid: int) -> None:
    while os.getppid() == launcher_pid:
        time.sleep(1.0)
    os._exit(1)


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    fsdp: bool = False
    group: bool = False  # a process group is up: under torchrun, even with one process

    @classmethod
    def single(cls) -> "Dist":
        return cls()

    @classmethod
    def from_env(cls, cfg, device: str = "auto") -> "Dist":
        """Under torchrun (WORLD_SIZE set) the DDP/FSDP path, even for one process, so that
        `--nproc 1` under torchrun measures and debugs what 8 processes run; otherwise single."""
        if "WORLD_SIZE" not in os.environ:
            return cls.single()
        world = int(os.environ["WORLD_SIZE"])
        check_world_size(cfg, world)
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        want = device if device not in ("", "auto") else cfg.hardware.device
        use_cuda = torch.cuda.is_available() and want != "cpu"
        if use_cuda:
            dev = torch.device("cuda", local_rank)
            torch.cuda.set_device(dev)
        else:
            dev = torch.device("cpu")
        if not tdist.is_initialized():
            tdist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=dev if use_cuda else None)
        return cls(rank=rank, world=world, local_rank=local_rank, device=dev, fsdp=cfg.hardware.fsdp, group=True)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """True when each rank holds only a shard of the weights (every rank must run every forward)."""
        return self.fsdp and self.group

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if not self.group:
            return model
        if self.fsdp:
            from torch.distributed.fsdp import fully_shard

            for m in model.modules():
                if isinstance(m, Block):
                    fully_shard(m)
            fully_shard(model)  # the rest (embedding = tied head, adapter, final norm) in one group
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        # find_unused_parameters stays False, and that is safe: every parameter gets a gradient
        # in every step of every architecture. Truncated backprop runs at least one iteration with
        # gradient (config requires train.k >= 1 and the sampler returns n_grad = min(k, p) with
        # p >= 1), and that iteration uses the whole core and the adapter; the no-grad iterations
        # only reuse those same parameters. Models without a loop (fixed_depth*) run their core
        # once with gradient; token_recurrent reuses the tied head and the final norm, which the
        # coda uses anyway. The prelude, coda, embedding and norms are always on the gradient path.
        # Parameters that ran under no_grad simply contributed nothing to the graph; the reducer
        # counts gradient hooks, not uses, so it neither waits on them nor errors. With gradient
        # accumulation, every micro-batch has this property, so the last one (outside no_sync)
        # fires every hook. Turning find_unused_parameters on would cost a graph walk per step.
        return DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def no_sync(self, model):
        """Skip the gradient all-reduce for a micro-batch that is not the last of the step."""
        if not self.group:
            return contextlib.nullcontext()
        if self.fsdp:
            return _fsdp_no_sync(model)
        return model.no_sync()

    def clip_grad(self, model: torch.nn.Module, max_norm: float) -> float:
        params = [p for p in model.parameters() if p.grad is not None]
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        if hasattr(norm, "full_tensor"):  # FSDP: per-shard norms combine into the global one
            norm = norm.full_tensor()
        if max_norm > 0:
            torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
        return float(norm)

    def sum_int(self, n: int) -> int:
        """Sum of an integer over all ranks."""
        if not self.group:
            return n
        buf = torch.tensor([n], dtype=torch.int64, device=self.device)
        tdist.all_reduce(buf)
        return int(buf.item())

    def reduce_loss(self, loss_sum: torch.Tensor, n_targets: int, n_tokens: int) -> tuple[float, int, int]:
        """Token-weighted mean loss over all ranks, and the global token counts."""
        if not self.group:
            return float(loss_sum) / max(n_targets, 1), n_targets, n_tokens
        buf = torch.tensor([float(loss_sum), n_targets, n_tokens], dtype=torch.float64, device=self.device)
        tdist.all_reduce(buf)
        return float(buf[0]) / max(float(buf[1]), 1.0), int(buf[1]), int(buf[2])

    def any_flag(self, flag: bool) -> bool:
        """True on every rank if it is true on rank 0 (stop requests reach every rank)."""
        if not self.group:
            return bool(flag)
        buf = torch.tensor([1 if flag else 0], device=self.device)
        tdist.broadcast(buf, src=0)
        return bool(buf.item())

    def from_main(self, value: float) -> float:
        """Rank 0's value on every rank (for anything that must agree, like a clock-driven lr)."""
        if not self.group:
            return value
        buf = torch.tensor([value], dtype=torch.float64, device=self.device)
        tdist.broadcast(buf, src=0)
        return float(buf.item())

    def barrier(self) -> None:
        if self.group:
            tdist.barrier()

    # ---- checkpoints: always the single-process format -----------------------------------

    def full_state_dict(self, raw_model, model) -> dict[str, torch.Tensor]:
        """Full weights as CPU tensors on rank 0 (empty elsewhere under FSDP). Every rank calls it."""
        from recurlab.checkpoint import model_tensors  # safetensors: loaded only when this runs

        if self.sharded:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            from recurlab.checkpoint import tied_names  # safetensors: loaded only when this runs

            sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            tied = tied_names(raw_model)
            return {k: v.contiguous() for k, v in sd.items() if k not in tied}
        return model_tensors(raw_model)

    def optimizer_state(self, model, optimizer, snapshot):
        """(tensors, meta) in the single-process layout on rank 0, None elsewhere. Every rank calls it."""
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

            sd = get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            return _by_index(sd, snapshot) if self.is_main else None
        return snapshot(optimizer) if self.is_main else None

    def load_weights(self, raw_model, model, path, loader) -> None:
        """Every rank reads the full weights with `loader` (which checks them) and keeps its shard."""
        if not self.sharded:
            loader(raw_model, path)
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        held = _Held(expected=model.state_dict().keys())
        loader(held, path)
        set_model_state_dict(model, held.sd, options=StateDictOptions(full_state_dict=True, strict=False))

    def load_optimizer(self, model, optimizer, path, loader) -> None:
        if not self.sharded:
            loader(optimizer, path)
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        held = _Held()
        loader(held, path)
        osd = _by_name(held.sd, _param_names(model, optimizer))
        set_optimizer_state_dict(model, optimizer, osd, options=StateDictOptions(full_state_dict=True))

    def close(self) -> None:
        if self.group and tdist.is_initialized():
            tdist.destroy_process_group()


@contextlib.contextmanager
def _fsdp_no_sync(model):
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


class _Held:
    """Stands in for a module or an optimizer so the checkpoint module's own readers and writers
    (with their checks and error messages) handle the single-process format for FSDP too."""

    def __init__(self, sd: dict | None = None, expected=()):
        self.sd, self.expected = sd, set(expected)

    def state_dict(self) -> dict:
        return self.sd

    def load_state_dict(self, sd: dict, strict: bool = True):
        self.sd = sd
        return sorted(self.expected - set(sd)), sorted(set(sd) - self.expected)


def _by_index(named: dict, snapshot):
    """A name-keyed full optimizer state (FSDP) in the index-keyed single-process layout.

    Indices number the parameters in param-group order, as `Optimizer.state_dict` does, and the
    optimizer is built over the same parameter order with or without FSDP.
    """
    index, groups = {}, []
    for group in named["param_groups"]:
        ids = []
        for name in group["params"]:
            index.setdefault(name, len(index))
            ids.append(index[name])
        groups.append({**group, "params": ids})
    state = {index[name]: st for name, st in named["state"].items()}
    return snapshot(_Held({"state": state, "param_groups": groups}))


def _param_names(model, optimizer) -> list[str]:
    """Parameter names in the optimizer's index order."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


def _by_name(sd: dict, names: list[str]) -> dict:
    """An index-keyed optimizer state dict keyed by parameter name (what FSDP loads)."""
    groups = [{**g, "params": [names[i] for i in g["params"]]} for g in sd["param_groups"]]
    return {"state": {names[i]: st for i, st in sd["state"].items()}, "param_groups": groups}
