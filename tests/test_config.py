"""Profiles load and validate; overrides apply; every bad value names its key."""

import pytest
import yaml

from recurlab.config import ConfigError, from_dict, load_profile, load_yaml, profile_names, profile_path, to_yaml


def test_all_profiles_parse_with_descriptions_and_the_core_four_validate():
    names = profile_names()
    assert {"tiny", "cpu", "rtx4090", "h100"} <= set(names)
    for name in names:  # some profiles need an override (a data path) before they validate
        assert from_dict(load_yaml(profile_path(name)), source=name).description, f"profile {name} has no description"
    for name in ("tiny", "cpu", "rtx4090", "h100"):
        cfg = load_profile(name)
        assert cfg.profile == name
        assert cfg.model.vocab_size > 0


def test_profiles_have_the_documented_shapes():
    tiny, cpu = load_profile("tiny"), load_profile("cpu")
    assert tiny.model.n_embd <= 48 and (tiny.model.n_prelude, tiny.model.n_core, tiny.model.n_coda) == (1, 1, 1)
    assert cpu.data.source == "task" and cpu.hardware.device == "cpu"
    for gpu in ("rtx4090", "h100"):
        cfg = load_profile(gpu)
        assert cfg.hardware.dtype == "bfloat16" and cfg.hardware.compile
        assert cfg.data.source == "hub" and cfg.data.seq_len <= cfg.model.block_size
        assert cfg.train.batch_size % cfg.train.micro_batch == 0


def test_every_profile_that_states_a_parameter_count_states_the_real_one():
    # the count is built on the meta device (no memory), from the profile as a run would resolve it
    import re

    torch = pytest.importorskip("torch")
    from recurlab.model import RecurrentLM

    checked = []
    for name in profile_names():
        description = yaml.safe_load(profile_path(name).read_text()).get("description", "")
        stated = re.search(r"(\d+(?:\.\d+)?)M-param", description)
        if stated is None:  # compare and the retrofits: their size comes from data or a Llama folder
            continue
        cfg = load_profile(name)
        with torch.device("meta"):
            n = RecurrentLM(cfg.model).num_params()
        assert f"{n / 1e6:.1f}" == stated.group(1), (name, n, description)
        checked.append(name)
    assert {"cpu", "rtx4090", "h100"} <= set(checked)


def test_dotted_and_bare_overrides():
    cfg = load_profile("tiny", ["train.max_steps=7", "n_embd=48", "difficulties=2,5", "hardware.compile=false"])
    assert cfg.train.max_steps == 7
    assert cfg.model.n_embd == 48
    assert cfg.data.difficulties == [2, 5]
    assert cfg.hardware.compile is False
    # the override survives a YAML round trip, as written to run.yaml
    assert "max_steps: 7" in to_yaml(cfg)


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["train.bogus=1"], "train.bogus"),
        (["nonsense=1"], "nonsense"),
        (["train.max_steps=many"], "train.max_steps"),
        (["hardware.compile=maybe"], "hardware.compile"),
        (["r_mean=0"], "train.r_mean"),
        (["k=5"], "train.k"),
        (["train.batch_size=16", "train.micro_batch=5"], "train.batch_size"),
        (["model.n_head=3"], "model.n_embd"),
        (["data.task=nope"], "data.task"),
    ],
)
def test_bad_values_raise_one_line_naming_the_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        load_profile("tiny", overrides)
    msg = str(err.value)
    assert key in msg
    assert "\n" not in msg


def test_unknown_profile_and_malformed_file(tmp_path):
    with pytest.raises(ConfigError, match="unknown profile 'nope'.*tiny"):
        load_profile("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  n_embd: [32\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_profile(str(bad))
    flat = tmp_path / "flat.yaml"
    flat.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_profile(str(flat))


def test_profile_file_by_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("model:\n  n_embd: 64\n  n_head: 4\ntrain:\n  r_mean: 2\n  k: 1\n")
    cfg = load_profile(str(path))
    assert cfg.profile == "mine" and cfg.model.n_embd == 64 and cfg.train.r_mean == 2


def test_own_profiles_in_the_working_directory_come_first(tmp_path, monkeypatch):
    from recurlab.config import BUILTIN_PROFILES

    monkeypatch.chdir(tmp_path)
    assert profile_path("tiny") == BUILTIN_PROFILES / "tiny.yaml"  # shipped inside the package
    (tmp_path / "profiles").mkdir()
    mine = yaml.safe_load((BUILTIN_PROFILES / "tiny.yaml").read_text())
    mine["train"]["max_steps"] = 7
    (tmp_path / "profiles" / "tiny.yaml").write_text(yaml.safe_dump(mine))
    (tmp_path / "profiles" / "mine.yaml").write_text(yaml.safe_dump(mine))
    assert {"mine", "tiny", "cpu"} <= set(profile_names())
    assert load_profile("tiny").train.max_steps == 7 and load_profile("mine").train.max_steps == 7
