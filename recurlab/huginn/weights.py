"""Map Huginn checkpoint tensors onto recurlab's `RecurrentLM` and load them lazily, shard by shard.

    from recurlab.huginn.weights import load_huginn_weights
    model = load_huginn_weights(folder, model_cfg, device="cuda", dtype=torch.bfloat16)

The model is built on the `meta` device, given uninitialised storage of the target dtype on the
target device, and every parameter is then filled from one safetensors tensor at a time, so the
peak extra memory is the largest single tensor (the embedding), never a second copy of the model.
Nothing is unpickled: only `model.safetensors` or `model.safetensors.index.json` with its shards.

Layout facts (from the reference raven_modeling_minimal.py), and what each needs here:
* names are the same (`transformer.wte`, `.prelude.i`, `.adapter`, `.core_block.j`, `.coda.i`,
  `.ln_f`; blocks with `norm_1..4`, `attn.Wqkv`, `attn.proj`, `attn.qk_bias`, `mlp.fc`, `mlp.proj`);
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
from recurlab.errors import ModelFormatError
from recurlab.huginn.config import DOWNLOAD_HINT
from recurlab.model import RecurrentLM, rotary_tables

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
TIED_HEAD = "lm_head.weight"
ROPE_TABLE = "freqs_cis"


def shard_map(folder: Path, hint: str = DOWNLOAD_HINT) -> dict[str, str]:
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


def _check_headers(folder: Path, shards: dict[str, str], expected: dict[str, tuple[int, ...]], cfg: ModelConfig) -> None:
    """Every needed tensor exists with the right shape, and nothing unknown is present."""
    extra_shapes = {
        TIED_HEAD: expected["transformer.wte.weight"],
        ROPE_TABLE: (1, cfg.block_size, 1, cfg.head_dim // 2, 2),
    }
    unknown = sorted(n for n in shards if n not in expected and n not in extra_shapes)
    if unknown:
        raise ModelFormatError(
            f"{folder} has tensors recurlab's Huginn layout does not know ({', '.join(unknown[:3])}"
            f"{', ...' if len(unknown) > 3 else ''}); it is not a Huginn-0125-format checkpoint or its config.json is wrong"
        )
    absent = [n for n in expected if n not in shards]
    if absent:
        raise ModelFormatError(
            f"{folder} is missing tensor {absent[0]}"
            f"{f' and {len(absent) - 1} more' if len(absent) > 1 else ''}; the config.json layer counts do not match the weights or the download is incomplete"
        )
    check_shard_shapes(folder, shards, {n: expected.get(n) or extra_shapes[n] for n in shards})


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


def empty_model(cfg: ModelConfig, device: str | torch.device, dtype: torch.dtype) -> RecurrentLM:
    """A RecurrentLM with uninitialised storage on `device`, built without a CPU copy first."""
    with torch.device("meta"):
        model = RecurrentLM(cfg)
    model = model.to(dtype=dtype).to_empty(device=device)
    model.lm_head.weight = model.transformer.wte.weight  # to_empty makes new tensors: tie again
    return model


@torch.no_grad()
def load_huginn_weights(folder: str | Path, cfg: ModelConfig, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> RecurrentLM:
    folder = Path(folder)
    shards = shard_map(folder)
    with torch.device("meta"):
        spec = RecurrentLM(cfg)
    expected = expected_tensors(spec)
    _check_headers(folder, shards, expected, cfg)

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
