"""Values into the typed configuration: a profile's mapping (`from_dict`) and dotted `key=value`
overrides (`parse_overrides`, `apply_overrides`), each value coerced to its field's type. Every
mistake is a ConfigError of one line that names the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import yaml

from recurlab.config.schema import SECTIONS, TOP_SCALARS, RunConfig
from recurlab.errors import ConfigError


def _allowed(cls) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def _coerce(key: str, value, typ):
    """Convert `value` (from YAML or a command-line string) to `typ`, or raise ConfigError."""
    origin = typing.get_origin(typ)
    if origin is list:
        (inner,) = typing.get_args(typ)
        if isinstance(value, str):
            items = value.replace(" ", "").split(",") if value.strip() else []
            if "" in items:
                raise ConfigError(f"{key}: {value!r} has an empty item; list the values with one comma between each, "
                                  f"e.g. {key}=1,2,4")
            value = items
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list of {inner.__name__} (e.g. {key}=1,2,4), got {value!r}")
        return [_coerce(key, v, inner) for v in value]
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if typ is int:
        return _in_int64(key, _coerce_int(key, value))
    if typ is float:
        number = _coerce_float(key, value)
        if not math.isfinite(number):  # nan and inf train to nan, or never stop
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return number
    if typ is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return "" if value is None else str(value)
    raise ConfigError(f"{key}: unsupported type")


def _coerce_int(key: str, value) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.replace("_", ""))
        except ValueError:  # also more digits than Python converts
            pass
    raise ConfigError(f"{key}: expected an integer, got {short_repr(value)}")


def _in_int64(key: str, number: int) -> int:
    """Every integer of a profile ends up in torch or numpy, which hold 64 bits."""
    if not -(2**63) <= number < 2**63:
        raise ConfigError(f"{key}: {short_repr(number)} does not fit in 64 bits; give a smaller value")
    return number


def _coerce_float(key: str, value) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(f"{key}: {short_repr(value)} is too large for a number; give a smaller value") from None
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ConfigError(f"{key}: expected a number, got {short_repr(value)}")


def short_repr(value) -> str:
    """repr() of a value for an error line, cut so that a 5000-digit number stays one short line."""
    text = repr(value) if not isinstance(value, int) or value.bit_length() < 10_000 else f"a {value.bit_length()}-bit integer"
    return text if len(text) <= 60 else text[:40] + f"... ({len(text)} characters)"


def _field_types(cls) -> dict:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def set_key(cfg: RunConfig, dotted: str, value) -> None:
    parts = resolve_key(dotted)
    if len(parts) == 1:
        setattr(cfg, parts[0], _coerce(dotted, value, str))
        return
    section, key = parts
    setattr(getattr(cfg, section), key, _coerce(dotted, value, _field_types(SECTIONS[section])[key]))


def resolve_key(dotted: str) -> list[str]:
    """[top-level key] or [section, key] for a dotted key; a bare key names the one section that has it."""
    parts = dotted.split(".")
    if len(parts) == 1 and parts[0] in TOP_SCALARS:
        return parts
    if len(parts) == 1:
        # a bare key is accepted when exactly one section has it: `r_mean=16`
        owners = [s for s, cls in SECTIONS.items() if parts[0] in _field_types(cls)]
        if len(owners) != 1:
            hint = f"one of model.*, data.*, train.*, hardware.* ({_allowed_sections()})"
            if len(owners) > 1:
                hint = " or ".join(f"{o}.{parts[0]}" for o in owners)
            raise ConfigError(f"unknown key {dotted!r}: use {hint}")
        parts = [owners[0], parts[0]]
    if len(parts) != 2 or parts[0] not in SECTIONS:
        raise ConfigError(f"unknown key {dotted!r}: sections are {', '.join(SECTIONS)} (e.g. train.r_mean=16)")
    section, key = parts
    if key not in _field_types(SECTIONS[section]):
        raise ConfigError(f"unknown key {dotted!r}: {section} has {_allowed(SECTIONS[section])}")
    return parts


def _allowed_sections() -> str:
    return "sections " + ", ".join(SECTIONS)


def from_dict(data: dict, source: str = "config") -> RunConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections (model, data, train, hardware)")
    cfg = RunConfig()
    for top, value in data.items():
        if top in TOP_SCALARS:
            set_key(cfg, top, value)
        elif top in SECTIONS:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: section {top!r} must be a mapping of keys")
            for key, v in value.items():
                set_key(cfg, f"{top}.{key}", v)
        else:
            raise ConfigError(
                f"{source}: unknown section {top!r}: allowed are {', '.join(TOP_SCALARS + tuple(SECTIONS))}"
            )
    return cfg


def parse_overrides(overrides: list[str]) -> list[tuple[str, str]]:
    """(key, value) pairs; a key given twice (also as `r_mean` and `train.r_mean`) is refused, as
    a key given twice in a profile file is."""
    pairs, seen = [], {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value or section.key=value")
        key, value = item.split("=", 1)
        key = key.strip()
        where = ".".join(resolve_key(key))
        if where in seen:
            raise ConfigError(f"{where} is given twice on the command line ({seen[where]!r} and {item!r}); keep one of them")
        seen[where] = item
        pairs.append((key, value.strip()))
    return pairs


def _list_value(key: str, value: str):
    """A YAML flow list given on the command line, `data.difficulties=[2,4]`."""
    try:
        return yaml.safe_load(value)
    except (yaml.YAMLError, ValueError):
        raise ConfigError(f"{key}: {value!r} is not a list; write {key}=1,2,4 or {key}=[1,2,4]") from None


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Set each `key=value` of `overrides` on `cfg`, coerced to the key's type; returns `cfg`."""
    for key, value in parse_overrides(overrides):
        set_key(cfg, key, _list_value(key, value) if value.startswith("[") else value)
    return cfg
