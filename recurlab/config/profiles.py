"""Profiles on disk: where they are found (`profile_dirs`, `profile_path`), the YAML reader that
refuses a key given twice (`load_yaml`), a profile read with its overrides (`read_profile`,
`load_profile`), a run directory's own run.yaml (`run_config`) and the YAML a run gets (`to_yaml`).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from recurlab.config.coerce import apply_overrides, from_dict
from recurlab.config.schema import RunConfig
from recurlab.config.validation import validate
from recurlab.errors import ConfigError, RunError

# built-in profiles are package data, so that every install (not only an editable one) has them
BUILTIN_PROFILES = Path(__file__).resolve().parent.parent / "profiles"


def profile_dirs() -> list[Path]:
    """Where profiles are found, first match wins: ./profiles (the user's own), the checkout's
    top-level profiles/ when recurlab runs from a source tree, then the built-in ones."""
    checkout = BUILTIN_PROFILES.parent.parent
    dirs = [Path.cwd() / "profiles"]
    if (checkout / "pyproject.toml").is_file():
        dirs.append(checkout / "profiles")
    dirs.append(BUILTIN_PROFILES)
    out = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def profile_names() -> list[str]:
    return sorted({p.stem for d in profile_dirs() for p in d.glob("*.yaml")})


def profile_path(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    for d in profile_dirs():
        path = d / f"{name}.yaml"
        if path.is_file():
            return path
    raise ConfigError(f"unknown profile {name!r}: available are {', '.join(profile_names())} (or a path to a .yaml)")


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen = {}
    for key_node, _value in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise _DuplicateKey(key, seen[key], key_node.start_mark.line + 1)
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


class _DuplicateKey(Exception):
    def __init__(self, key, first: int, again: int):
        super().__init__(key)
        self.key, self.first, self.again = key, first, again


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_yaml(path: Path) -> dict:
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except _DuplicateKey as dup:
        raise ConfigError(f"{path}: line {dup.again}: key {dup.key!r} is given twice (first on line {dup.first}); "
                          "keep one of them") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)}); fix the file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text, so it is not a profile; fix or remove the file") from None
    except ValueError as exc:  # a scalar YAML cannot build, e.g. an integer of more digits than Python converts
        raise ConfigError(f"{path} is not valid YAML ({str(exc).splitlines()[0][:80]}); fix the file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    return data or {}


def read_profile(name: str, overrides: list[str] | None = None) -> RunConfig:
    """The profile `name` with its overrides, not yet validated: for a caller that shapes it
    further before `validate` (a new run's retrofit model, recurlab.lifecycle.resolve_profile)."""
    path = profile_path(name)
    cfg = from_dict(load_yaml(path), source=str(path))
    cfg.profile = path.stem
    return apply_overrides(cfg, overrides or [])


def load_profile(name: str, overrides: list[str] | None = None) -> RunConfig:
    return validate(read_profile(name, overrides))


def run_config(run) -> RunConfig:
    """The validated config of a run directory (its run.yaml); raises RunError naming the run.
    Torch-free, so that readers of a run's config never import torch."""
    try:
        return validate(from_dict(load_yaml(run.config_path), source=str(run.config_path)))
    except ConfigError as exc:
        raise RunError(f"run {run.name}: {exc}") from None


def to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
