"""Load a checkpoint whose tensor names differ from recurlab's, lazily and shard by shard.

    plan = {"model.layers.0.self_attn.q_proj.weight": Target("transformer.core_block.0.attn.Wqkv.weight", 0), ...}
    model = load_mapped(folder, model_cfg, plan, family="Ouro", hint="huggingface-cli download ...")

A plan maps every checkpoint tensor to a row range of one recurlab parameter (several source
tensors may stack into one parameter, e.g. q, k and v into `attn.Wqkv`). Before anything is
loaded, the headers are checked: an unknown tensor, a missing one or a shape that disagrees with
config.json is reported in one line (ModelFormatError). The model is then built on the `meta`
device, given empty storage of the target dtype on the target device, and filled one safetensors
tensor at a time, so no second copy of the model exists. Nothing is unpickled.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from recurlab.config import ModelConfig
from recurlab.errors import ModelFormatError
from recurlab.families.common import Target
from recurlab.huginn.weights import check_shard_shapes, shard_map
from recurlab.model import RecurrentLM


def empty_model(cfg: ModelConfig, device, dtype: torch.dtype) -> RecurrentLM:
    """A RecurrentLM with uninitialised storage on `device`, built without a CPU copy first."""
    with torch.device("meta"):
        model = RecurrentLM(cfg)
    model = model.to(dtype=dtype).to_empty(device=device)
    if cfg.tie_head:
        model.lm_head.weight = model.transformer.wte.weight  # to_empty makes new tensors: tie again
    return model


def _expected_shapes(plan: dict[str, Target], params: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    out = {}
    for name, t in plan.items():
        shape = params[t.param]
        rows = shape[0] if t.rows is None else t.rows
        out[name] = (rows, *shape[1:])
    return out


def _check_coverage(plan: dict[str, Target], params: dict[str, tuple[int, ...]], tied: bool, family: str,
                    fresh: tuple[str, ...]) -> None:
    """Every parameter but the `fresh` ones is filled exactly once (a bug in a family's map, not in the folder)."""
    filled: dict[str, int] = {}
    for t in plan.values():
        rows = params[t.param][0] if t.rows is None else t.rows
        filled[t.param] = filled.get(t.param, 0) + rows
    for name, shape in params.items():
        if (tied and name == "lm_head.weight") or name in fresh:
            continue
        if filled.get(name, 0) != shape[0]:
            raise AssertionError(f"{family} tensor map leaves {name} {filled.get(name, 0)}/{shape[0]} rows filled")


def check_headers(folder: Path, plan: dict[str, Target], cfg: ModelConfig, family: str, hint: str,
                  ignore=lambda name: False, fresh: tuple[str, ...] = ()) -> dict[str, str]:
    """Shard map of the folder after checking names and shapes against the plan. `ignore(name)`
    accepts tensors that may be present and are not needed; `fresh` parameters keep their init."""
    shards = shard_map(folder, hint)
    with torch.device("meta"):
        spec = RecurrentLM(cfg)
    params = {n: tuple(p.shape) for n, p in spec.named_parameters()}
    _check_coverage(plan, params, cfg.tie_head, family, fresh)
    expected = _expected_shapes(plan, params)
    unknown = sorted(n for n in shards if n not in expected and not ignore(n))
    if unknown:
        raise ModelFormatError(
            f"{folder} has tensors recurlab's {family} layout does not know ({', '.join(unknown[:3])}"
            f"{', ...' if len(unknown) > 3 else ''}); this variant is not supported or config.json does not match the weights"
        )
    absent = [n for n in expected if n not in shards]
    if absent:
        raise ModelFormatError(
            f"{folder} is missing tensor {absent[0]}{f' and {len(absent) - 1} more' if len(absent) > 1 else ''}; "
            f"the config.json layer counts do not match the weights or the download is incomplete ({hint})"
        )
    check_shard_shapes(folder, shards, {n: expected[n] for n in shards if n in expected})
    return shards


@torch.no_grad()
def load_mapped(folder: str | Path, cfg: ModelConfig, plan: dict[str, Target], family: str, hint: str,
                device="cpu", dtype: torch.dtype = torch.float32, ignore=lambda name: False) -> RecurrentLM:
    """The model in eval mode with every parameter read from the folder through `plan`."""
    folder = Path(folder)
    shards = check_headers(folder, plan, cfg, family, hint, ignore)
    model = empty_model(cfg, device, dtype)
    _fill(model, folder, shards, plan)
    return model.eval()


@torch.no_grad()
def copy_mapped(model: RecurrentLM, folder: str | Path, plan: dict[str, Target], family: str, hint: str,
                ignore=lambda name: False, fresh: tuple[str, ...] = ()) -> RecurrentLM:
    """Overwrite an initialised model's parameters from the folder (the `fresh` ones keep their init)."""
    folder = Path(folder)
    shards = check_headers(folder, plan, model.cfg, family, hint, ignore, fresh)
    _fill(model, folder, shards, plan)
    return model


def _fill(model: RecurrentLM, folder: Path, shards: dict[str, str], plan: dict[str, Target]) -> None:
    params = dict(model.named_parameters())
    for shard in sorted({shards[n] for n in plan}):
        path = folder / shard
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                for name in f.keys():
                    target = plan.get(name)
                    if target is None:
                        continue
                    tensor = f.get_tensor(name)
                    param = params[target.param]
                    param[target.row: target.row + tensor.shape[0]].copy_(tensor)
                    del tensor
        except (SafetensorError, OSError) as exc:
            raise ModelFormatError(f"{path} could not be read ({exc}); re-download that shard") from None
