"""What a path given as a model is, told without torch: a run directory, or a Hugging Face folder
whose config.json names a model type recurlab opens.

    from recurlab.folders import check_model_path, folder_model_type, read_config_json
    check_model_path("runs/add-1")            # "run" (it has a complete checkpoint)
    check_model_path("models/huginn-0125")    # "huginn_raven"; a bad config.json raises ModelFormatError
    folder_model_type(Path("models/ouro"))    # "ouro"
    read_config_json(Path("models/ouro"), hint)   # the one reader of a folder's config.json

The TUI checks `--model` with this before its first frame; the engine's families
(recurlab.engine.loading.FAMILIES) open a folder of the same model types.
"""

from __future__ import annotations

import json
from pathlib import Path

from recurlab.errors import ModelFormatError, RunError
from recurlab.rundir import RunDir

# config.json model_type values of the engine's families, for the torch-free check (huginn_raven:
# Huginn-0125 and retrofitted Llama models; llama: refused with the command that retrofits it; ouro: Ouro)
MODEL_TYPES = ("huginn_raven", "llama", "ouro")


def read_config_json(path: Path, hint: str = "") -> dict:
    """A model folder's config.json as a JSON object, or one line saying why it is not one. `hint`
    says where the folder comes from (a download command), for a missing folder or file."""
    folder = Path(path)
    file = folder / "config.json"
    where = f" ({hint})" if hint else ""
    if not folder.is_dir():
        raise ModelFormatError(f"{folder} is not a folder; download the model" + (f" with `{hint}`" if hint else ""))
    if not file.is_file():
        raise ModelFormatError(f"{folder} has no config.json; it is not a Hugging Face model folder{where}")
    try:
        raw = json.loads(file.read_bytes())
    except OSError as exc:
        raise ModelFormatError(f"cannot read {file} ({exc.strerror}); check the folder's permissions") from None
    except ValueError as exc:  # also UnicodeDecodeError
        raise ModelFormatError(f"{file} is not valid JSON ({exc}); re-download the model folder") from None
    if not isinstance(raw, dict):
        raise ModelFormatError(f"{file} must hold a JSON object of model settings; re-download the model folder")
    return raw


def model_type(path: Path) -> str | None:
    """The model_type a folder's config.json declares; None when there is no readable one."""
    try:
        found = read_config_json(path).get("model_type")
    except ModelFormatError:
        return None
    return found if isinstance(found, str) else None


def folder_model_type(path: Path, known: tuple[str, ...] = MODEL_TYPES) -> str:
    """The model_type of a Hugging Face folder's config.json, one of `known` (the engine passes
    those of its families)."""
    raw = read_config_json(path)
    found = raw.get("model_type")
    if not isinstance(found, str) or found not in known:
        arch = raw.get("architectures")
        arch = ",".join(map(str, arch)) if isinstance(arch, list) else str(arch or "")
        what = f"a {found} model" if isinstance(found, str) and found else "a model with no model_type"
        raise ModelFormatError(f"{path} holds {what} ({arch or 'unknown'}); recurlab opens run directories and folders of model type "
                               f"{', '.join(sorted(known))}")
    return found


def check_model_path(model: str) -> str:
    """'run' for a run directory with a complete checkpoint, else the model type of a model folder;
    RunError or ModelFormatError with one line for anything that cannot be opened as a model."""
    if not model:
        raise RunError("--model '' is empty: pass a run directory or a model folder")
    path = Path(model)
    if not path.exists():
        raise RunError(f"--model {model!r} does not exist: pass a run directory or a model folder")
    if (path / "run.yaml").is_file():
        if RunDir(path).latest_checkpoint() is None:
            raise RunError(f"--model {model!r} is a run with no complete checkpoint yet; wait for one "
                           "(train.checkpoint_every) or pass another run")
        return "run"
    if not (path / "config.json").is_file():
        raise RunError(f"--model {model!r} is neither a run directory (run.yaml) nor a Hugging Face model folder "
                       "(config.json)")
    return folder_model_type(path)
