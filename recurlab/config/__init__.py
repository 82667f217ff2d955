"""Typed run configuration: profiles (YAML) plus `key=value` overrides, validated.

    from recurlab.config import load_profile
    cfg = load_profile("tiny", ["train.max_steps=50", "model.n_embd=64"])

Every user-facing mistake raises `ConfigError` with one line that names the key and
what is allowed; the CLI prints that line and exits with code 2.
This package imports no torch so that the CLI and the TUI start fast. Its modules, one job each:
schema (the dataclasses), coerce (a profile's mapping and dotted overrides into them), validation
(`validate`), profiles (finding and reading profiles and run.yaml files) and r_policy (the r values
offered by default). The names below are the package's interface; callers import them from here.
"""

from recurlab.config.coerce import from_dict, parse_overrides
from recurlab.config.profiles import (
    BUILTIN_PROFILES, load_profile, load_yaml, profile_dirs, profile_names, profile_path, read_profile, run_config, to_yaml,
)
from recurlab.config.r_policy import R_REACH, default_rs, slider_max_r
from recurlab.config.schema import SECTIONS, TOP_SCALARS, DataConfig, HardwareConfig, ModelConfig, RunConfig, TrainConfig
from recurlab.config.validation import validate
from recurlab.errors import ConfigError  # callers catch recurlab.config.ConfigError

__all__ = ["BUILTIN_PROFILES", "R_REACH", "SECTIONS", "TOP_SCALARS", "ConfigError", "DataConfig", "HardwareConfig",
           "ModelConfig", "RunConfig", "TrainConfig", "default_rs", "from_dict", "load_profile", "load_yaml",
           "parse_overrides", "profile_dirs", "profile_names", "profile_path", "read_profile", "run_config",
           "slider_max_r", "to_yaml", "validate"]
