"""Process-group plumbing for the training loop: one process, or a rank under torchrun.

    dist = Dist.from_env(cfg, device)     # reads RANK / WORLD_SIZE / LOCAL_RANK set by torchrun
    model = dist.wrap(model, cfg)         # DDP (or FSDP with hardware.fsdp) when world > 1

Everything the loop needs to know about other ranks goes through this object, so the loop reads
the same for one process and for many.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    fsdp: bool = False

    @classmethod
    def single(cls) -> "Dist":
        return cls()

    @classmethod
    def from_env(cls, cfg, device: str = "auto") -> "Dist":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls.single()
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        want = device if device not in ("", "auto") else cfg.hardware.device
        use_cuda = torch.cuda.is_available() and want != "cpu"
        if use_cuda:
            dev = torch.device("cuda", local_rank)
            torch.cuda.set_device(dev)
        else:
            dev = torch.device("cpu")
        if not tdist.is_initialized():
            tdist.init_process_group(backend="nccl" if use_cuda else "gloo")
        if cfg.train.batch_size % world:
            raise ValueError(f"train.batch_size ({cfg.train.batch_size}) must be divisible by the number of processes ({world})")
        return cls(rank=rank, world=world, local_rank=local_rank, device=dev, fsdp=cfg.hardware.fsdp)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: torch.nn.Module, cfg) -> torch.nn.Module:
        if self.world == 1:
            return model
        if self.fsdp:
            from torch.distributed.fsdp import fully_shard

            from recurlab.model import SandwichBlock

            for m in model.modules():
                if isinstance(m, SandwichBlock):
                    fully_shard(m)
            fully_shard(model)
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        # Every parameter receives a gradient in every step: truncated backprop always runs at
        # least one iteration with gradient through the whole core and adapter, and the no-grad
        # iterations reuse those same parameters. So find_unused_parameters stays False (it would
        # cost a graph traversal per step) and the reducer never waits on a parameter that only
        # ran under no_grad.
        return DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def no_sync(self, model):
        if self.world > 1 and hasattr(model, "no_sync"):
            return model.no_sync()
        return contextlib.nullcontext()

    def clip_grad(self, model: torch.nn.Module, max_norm: float) -> float:
        params = [p for p in model.parameters() if p.grad is not None]
        if max_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        if hasattr(norm, "full_tensor"):
            norm = norm.full_tensor()
        return float(norm)

    def reduce_loss(self, loss_sum: torch.Tensor, n_targets: int, n_tokens: int) -> tuple[float, int, int]:
        """Token-weighted mean loss over all ranks, and the global token counts."""
        if self.world == 1:
            return float(loss_sum) / max(n_targets, 1), n_targets, n_tokens
        buf = torch.tensor([float(loss_sum), n_targets, n_tokens], dtype=torch.float64, device=self.device)
        tdist.all_reduce(buf)
        return float(buf[0]) / max(float(buf[1]), 1.0), int(buf[1]), int(buf[2])

    def any_flag(self, flag: bool) -> bool:
        """True on every rank if it is true on rank 0 (stop requests reach every rank)."""
        if self.world == 1:
            return bool(flag)
        buf = torch.tensor([1 if flag else 0], device=self.device)
        tdist.broadcast(buf, src=0)
        return bool(buf.item())

    def barrier(self) -> None:
        if self.world > 1:
            tdist.barrier()

    def full_state_dict(self, raw_model, model) -> dict[str, torch.Tensor]:
        from recurlab.checkpoint import model_tensors

        if self.fsdp and self.world > 1:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            sd = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            return {k: v.contiguous() for k, v in sd.items() if k != "lm_head.weight"}
        return model_tensors(raw_model)

    def optimizer_state(self, model, optimizer, snapshot):
        if self.fsdp and self.world > 1:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

            sd = get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            return _flatten_named_optimizer(sd) if self.is_main else None
        return snapshot(optimizer) if self.is_main else None

    def load_weights(self, raw_model, model, path, loader) -> None:
        if self.fsdp and self.world > 1:
            from safetensors.torch import load_file
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            sd = load_file(str(path / "model.safetensors"))
            set_model_state_dict(model, sd, options=StateDictOptions(full_state_dict=True, strict=False))
            return
        loader(raw_model, path)

    def load_optimizer(self, model, optimizer, path, loader) -> None:
        if self.fsdp and self.world > 1:
            return  # FSDP runs resume with fresh optimizer moments (weights and step are restored)
        loader(optimizer, path)

    def close(self) -> None:
        if self.world > 1 and tdist.is_initialized():
            tdist.destroy_process_group()


def _flatten_named_optimizer(sd: dict):
    tensors, meta = {}, {"param_groups": sd["param_groups"], "state": {}}
    for name, st in sd["state"].items():
        meta["state"][name] = {}
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"{name}.{key}"] = val.detach().contiguous().cpu()
                meta["state"][name][key] = "tensor"
            else:
                meta["state"][name][key] = val
    return tensors, meta
