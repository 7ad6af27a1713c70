from __future__ import annotations

import pytest

from jointnas.search.config import StudyConfig, diff_configs, load_config, parse_config
from jointnas.spaces import UserInputError

from ..conftest import write_config


def _error(data: dict) -> str:
    with pytest.raises(UserInputError) as info:
        parse_config(data, "s.toml")
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_defaults_are_valid():
    cfg = StudyConfig()
    assert cfg.objectives.directions == ["maximize", "minimize", "minimize"]
    assert len(cfg.config_hash()) == 64


def test_unknown_key_names_the_closest_valid_one():
    assert _error({"pipeline": {"train_epoch": 3}}) == (
        "s.toml: unknown key 'train_epoch' in [pipeline]; did you mean 'train_epochs'?"
    )
    assert "did you mean 'weight_bits'" in _error({"space": {"compression": {"weight_bit": [8]}}})
    assert "unknown key 'objective' in top level; did you mean 'objectives'?" in _error({"objective": {}})


def test_out_of_range_values_name_the_allowed_range():
    assert _error({"pipeline": {"train_epochs": -1}}) == (
        "s.toml: pipeline.train_epochs: input should be greater than or equal to 0 (got -1)"
    )
    msg = _error({"space": {"compression": {"weight_bits": [8, 3]}}})
    assert msg.startswith("s.toml: space.compression.weight_bits.1: input should be 1, 2, 4, 8, 16, 32 or 'fp16'")
    assert "prune_ratio range [0.0, 1.0] must satisfy 0 <= low <= high < 1" in _error(
        {"space": {"compression": {"prune_ratio": [0.0, 1.0]}}}
    )
    assert "must follow the order prune → lowrank → quantize" in _error({"pipeline": {"steps": ["quantize", "prune"]}})
    assert "input should be 'tpe', 'nsga2', 'random', 'grid', 'gp', 'dnas' or 'hardcore' (got 'cmaes')" in _error(
        {"sampler": {"name": "cmaes"}}
    )


def test_toml_syntax_and_missing_file(tmp_path):
    bad = write_config(tmp_path, "[study\nname='x'")
    with pytest.raises(UserInputError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(UserInputError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_hash_ignores_storage_and_budget_but_not_the_space():
    a = StudyConfig()
    b = parse_config({"study": {"storage": "sqlite:///x.db"}, "budget": {"n_trials": 99}})
    c = parse_config({"space": {"kernel": [3]}})
    assert a.config_hash() == b.config_hash()
    assert a.config_hash() != c.config_hash()
    assert diff_configs(a.canonical(), c.canonical()) == ["space.kernel: study has [3, 5], config has [3]"]
