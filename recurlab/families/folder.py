"""What a model folder of any family opens into beside its weights: its tokenizer and a RunConfig.

    tok = folder_tokenizer(spec, hint)                       # BPETokenizer with the folder's special ids
    cfg = folder_run_config(spec, tok, device="cuda", dtype="bfloat16")
    cfg.train.r_mean     # the recurrence the model was trained at (Ouro: total_ut_steps = 4)

The RunConfig is not a training run: it only describes the model (profile = folder name,
data.tokenizer = its tokenizer.json) so that code written for run directories can read it.
Ids that config.json states explicitly take precedence over the tokenizer's own; ids the tokenizer
does not know (the model's vocabulary may be padded beyond it) decode to U+FFFD. The special
tokens around a whole sequence follow the folder's tokenizer_config.json and post-processor
(recurlab.text.specials).
"""

from __future__ import annotations

from recurlab.config import DataConfig, HardwareConfig, RunConfig, TrainConfig
from recurlab.errors import ModelFormatError
from recurlab.families.common import FolderSpec
from recurlab.text.bpe import BPETokenizer
from recurlab.text.specials import folder_specials


def folder_tokenizer(spec: FolderSpec, hint: str) -> BPETokenizer:
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


def folder_run_config(spec: FolderSpec, tok: BPETokenizer, device: str, dtype: str) -> RunConfig:
    return RunConfig(
        profile=spec.path.resolve().name,
        description=spec.description,
        model=spec.model,
        data=DataConfig(source="local", name=str(spec.path), tokenizer=str(spec.path / "tokenizer.json"),
                        tokenizer_vocab=len(tok), seq_len=spec.seq_len),
        train=TrainConfig(r_mean=spec.r_default, k=min(spec.k, spec.r_default)),
        hardware=HardwareConfig(device=device, dtype=dtype),
    )
