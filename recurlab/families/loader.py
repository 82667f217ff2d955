"""Open a Hugging Face model folder of any supported family as recurlab's model, tokenizer and config.

    model, tok, cfg = open_folder("models/Ouro-1.4B", device="cuda")      # bf16 on CUDA, fp32 on CPU
    cfg.model.exit_gate      # True: `--exit gate:0.9` works on it
    cfg.train.r_mean         # the recurrence it was trained at (Ouro: total_ut_steps = 4)

Huginn folders go through recurlab.huginn (which also checks the saved rotary table); Ouro and
retrofitted folders through their tensor maps (recurlab.families.ouro / .retrofit) and the lazy,
shard-by-shard loader in recurlab.families.tensors. A plain Llama folder is refused with the
command that converts it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from recurlab.config import DataConfig, HardwareConfig, RunConfig, TrainConfig
from recurlab.errors import InferenceError, ModelFormatError
from recurlab.families import detect_family
from recurlab.families.common import FolderSpec
from recurlab.huginn.loader import DTYPE_NAMES, _resolve_dtype
from recurlab.text.bpe import BPETokenizer
from recurlab.text.specials import folder_specials


def _tokenizer(spec: FolderSpec, hint: str) -> BPETokenizer:
    path = spec.path / "tokenizer.json"
    if not path.is_file():
        raise ModelFormatError(f"{spec.path} has no tokenizer.json; download it with the weights ({hint})")
    tok = BPETokenizer.load(path)
    for role, value in (("bos", spec.bos_id), ("eos", spec.eos_id), ("pad", spec.pad_id)):
        if value is not None:
            setattr(tok, f"{role}_id", int(value))
            tok.special_ids.add(int(value))
    tok.prefix_ids, tok.suffix_ids = folder_specials(spec.path, tok)  # <s> for Llama-family folders
    return tok


def _open_mapped(family: str, folder: Path, dev: torch.device, tdtype: torch.dtype):
    from recurlab.families.tensors import load_mapped

    if family == "ouro":
        from recurlab.families.ouro import DOWNLOAD_HINT, ouro_plan, read_ouro_config

        spec, name = read_ouro_config(folder), "Ouro"
        plan = ouro_plan(spec.model)
    else:
        from recurlab.families.retrofit import DOWNLOAD_HINT, read_retrofit_config, retrofit_plan

        spec, name = read_retrofit_config(folder), "retrofitted"
        plan = retrofit_plan(spec.model)
    tok = _tokenizer(spec, DOWNLOAD_HINT)
    # a rotary inverse-frequency buffer some exports carry is recomputed, not read
    model = load_mapped(folder, spec.model, plan, name, DOWNLOAD_HINT, dev, tdtype,
                        ignore=lambda n: n.endswith("rotary_emb.inv_freq"))
    return model, tok, spec


def open_folder(path: str | Path, device: str = "cpu", dtype=None):
    """(model in eval mode on `device`, tokenizer, RunConfig). Raises ModelFormatError."""
    folder = Path(path)
    family = detect_family(folder)
    if family == "huginn" or family is None:
        from recurlab.huginn import open_huginn

        return open_huginn(folder, device=device, dtype=dtype)  # its errors name a foreign model type
    if family == "llama":
        raise ModelFormatError(
            f"{folder} is a plain Llama model, not a looped one; convert it by retrofit training: "
            f"recurlab train --profile retrofit-tinyllama model.init_from={folder}"
        )
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InferenceError("CUDA is not available on this machine; use --device cpu")
    tdtype = _resolve_dtype(dtype, dev)
    model, tok, spec = _open_mapped(family, folder, dev, tdtype)
    cfg = RunConfig(
        profile=folder.resolve().name,
        description=f"{family} checkpoint at {folder}",
        model=spec.model,
        data=DataConfig(source="local", name=str(folder), tokenizer=str(folder / "tokenizer.json"),
                        tokenizer_vocab=len(tok), seq_len=min(spec.model.block_size, 4096)),
        train=TrainConfig(r_mean=spec.r_default, k=min(spec.k, spec.r_default)),
        hardware=HardwareConfig(device=str(dev), dtype=DTYPE_NAMES.get(tdtype, str(tdtype))),
    )
    return model, tok, cfg
