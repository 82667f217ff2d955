"""Read a folder's safetensors into recurlab's RecurrentLM: lazily, shard by shard, headers checked first.

    shards = shard_map(folder, hint)           # {tensor name: shard file}; pickle-only folders refused
    model = load_mapped(folder, model_cfg, plan, family="Ouro", hint="huggingface-cli download ...")
    model = load_huginn_weights(folder, model_cfg, device="cuda", dtype=torch.bfloat16)

Before anything is loaded, the headers are checked (`check_tensors`): an unknown tensor, a missing
one or a shape that disagrees with config.json is reported in one line (ModelFormatError). The
model is then built on the `meta` device, given empty storage of the target dtype on the target
device, and filled one safetensors tensor at a time, so the peak extra memory is the largest single
tensor (the embedding), never a second copy of the model. Nothing is unpickled: only
`model.safetensors` or `model.safetensors.index.json` with its shards.

Ouro and retrofitted folders go through a plan that maps every checkpoint tensor to a row range of
one recurlab parameter (several source tensors may stack into one parameter, e.g. q, k and v into
`attn.Wqkv`). Huginn-0125's names are recurlab's own; its layout facts (from the reference
raven_modeling_minimal.py):
* `attn.Wqkv` rows are [q | k | v], each (heads, head_dim): recurlab's (3, heads, head_dim) view;
* `attn.qk_bias` is stored as (2, 1, heads, head_dim): squeezed to (2, heads, head_dim);
* `mlp.fc` rows are [gate | up] with silu on the first half: the same in recurlab;
* `lm_head.weight` duplicates the tied embedding: skipped (its shape is still checked);
* `freqs_cis` (1, block_size, 1, head_dim/2, [cos, sin]) is a saved rotary table: checked against
  recurlab's own rotary definition at the configured base, then dropped.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from recurlab.config import ModelConfig
from recurlab.errors import InferenceError, ModelFormatError
from recurlab.families.common import Target
from recurlab.families.huginn import DOWNLOAD_HINT, ROPE_TABLE, TIED_HEAD
from recurlab.model import RecurrentLM, rotary_tables

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    """None: bf16 on CUDA, fp32 elsewhere; a name or a torch dtype otherwise."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        by_name = {v: k for k, v in DTYPE_NAMES.items()}
        if dtype not in by_name:
            raise InferenceError(f"dtype {dtype!r} is not one of {', '.join(by_name)}")
        return by_name[dtype]
    return dtype


def shard_map(folder: Path, hint: str) -> dict[str, str]:
    """{tensor name: shard file name}, from the index or the single weights file. `hint` says
    where the folder comes from (a download command) in the error messages."""
    index = folder / INDEX
    if index.is_file():
        try:
            data = json.loads(index.read_text())
            weight_map = data["weight_map"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ModelFormatError(f"{index} is unreadable or has no weight_map; re-download it ({hint})") from None
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelFormatError(f"{index} has an empty weight_map; re-download it ({hint})")
        missing = sorted({s for s in weight_map.values() if not (folder / s).is_file()})
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise ModelFormatError(
                f"{folder} is missing shard {missing[0]}{more} listed in {INDEX}; finish the download ({hint})"
            )
        return {str(k): str(v) for k, v in weight_map.items()}
    single = folder / SINGLE
    if single.is_file():
        try:
            with safe_open(str(single), framework="pt") as f:
                return {k: SINGLE for k in f.keys()}
        except (SafetensorError, OSError) as exc:
            raise ModelFormatError(f"{single} is not a readable safetensors file ({exc}); re-download it") from None
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt")) or any(folder.glob("*.pth")):
        raise ModelFormatError(f"{folder} has only pickle weights (.bin/.pt); recurlab loads safetensors only ({hint})")
    raise ModelFormatError(f"{folder} has neither {INDEX} nor {SINGLE}; download the weights ({hint})")


def check_tensors(folder: Path, shards: dict[str, str], expected: dict[str, tuple[int, ...]], family: str, hint: str,
                  ignore=lambda name: False) -> None:
    """Every `expected` tensor exists with its shape, and nothing unknown is present (but what
    `ignore(name)` accepts: tensors that may be there and are not needed)."""
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


def check_shard_shapes(folder: Path, shards: dict[str, str], wanted: dict[str, tuple[int, ...]]) -> None:
    """Each tensor in `wanted` is in the shard the index names, with that shape (headers only)."""
    by_shard: dict[str, list[str]] = {}
    for name in wanted:
        by_shard.setdefault(shards[name], []).append(name)
    for shard, names in by_shard.items():
        path = folder / shard
        try:
            with safe_open(str(path), framework="pt") as f:
                present = set(f.keys())
                for name in names:
                    if name not in present:
                        raise ModelFormatError(f"{path} lacks tensor {name} that {INDEX} places there; re-download that shard")
                    got = tuple(f.get_slice(name).get_shape())
                    if got != wanted[name]:
                        raise ModelFormatError(
                            f"{path}: tensor {name} has shape {list(got)} but config.json implies {list(wanted[name])}; "
                            "the weights and config.json do not belong together"
                        )
        except (SafetensorError, OSError) as exc:
            raise ModelFormatError(f"{path} is not a readable safetensors file ({exc}); re-download it") from None


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
    check_tensors(folder, shards, expected, family, hint, ignore)
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


# ---- Huginn-0125: recurlab's names, three layout differences ----------------------------------------

def huginn_shape(name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape a recurlab tensor has in a Huginn checkpoint."""
    if name.endswith("attn.qk_bias"):
        return (shape[0], 1, *shape[1:])
    return shape


def expected_tensors(model: RecurrentLM) -> dict[str, tuple[int, ...]]:
    """Huginn name -> Huginn shape for every tensor the model needs (lm_head excluded: tied)."""
    return {n: huginn_shape(n, tuple(p.shape)) for n, p in model.named_parameters() if n != TIED_HEAD}


def _rope_reference(cfg: ModelConfig) -> torch.Tensor:
    cos, sin = rotary_tables(torch.arange(cfg.block_size), cfg.head_dim, cfg.rope_base)
    return torch.stack([cos, sin], dim=-1)[None, :, None]  # (1, T, 1, D/2, 2)


def _check_rope_table(table: torch.Tensor, cfg: ModelConfig, where: str) -> None:
    ref = _rope_reference(cfg)
    tol = 1e-3 if table.dtype == torch.float32 else 2e-2
    err = (table.float() - ref).abs().max().item()
    if err > tol:
        raise ModelFormatError(
            f"{where}: the saved rotary table freqs_cis differs from rope_base={cfg.rope_base:g} (max error {err:.3g}); "
            "set the right rope_base in config.json"
        )


@torch.no_grad()
def load_huginn_weights(folder: str | Path, cfg: ModelConfig, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> RecurrentLM:
    folder = Path(folder)
    shards = shard_map(folder, DOWNLOAD_HINT)
    with torch.device("meta"):
        spec = RecurrentLM(cfg)
    expected = expected_tensors(spec)
    check_tensors(folder, shards, {**expected, TIED_HEAD: expected["transformer.wte.weight"],
                                   ROPE_TABLE: (1, cfg.block_size, 1, cfg.head_dim // 2, 2)}, "Huginn", DOWNLOAD_HINT)

    model = empty_model(cfg, device, dtype)
    params = dict(model.named_parameters())
    filled: set[str] = set()
    for shard in sorted(set(shards.values())):
        path = folder / shard
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                for name in f.keys():
                    if name == TIED_HEAD:
                        continue
                    tensor = f.get_tensor(name)
                    if name == ROPE_TABLE:
                        _check_rope_table(tensor, cfg, str(path))
                        continue
                    param = params[name]
                    param.copy_(tensor.reshape(param.shape))
                    filled.add(name)
                    del tensor
        except (SafetensorError, OSError) as exc:
            raise ModelFormatError(f"{path} could not be read ({exc}); re-download that shard") from None
    unfilled = [n for n in expected if n not in filled]
    if unfilled:  # the header check makes this unreachable unless a shard changed while loading
        raise ModelFormatError(f"{folder}: tensor {unfilled[0]} was not loaded; re-download the model folder")
    return model.eval()
