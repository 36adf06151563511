"""Config: every group option composes into the typed schema; unknown keys and wrong types are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from explorec.config import ExplorecConfig, compose, conf_dir, config_hash, from_dict, to_dict
from explorec.data.sources import validate_data_choices
from explorec.errors import ConfigError

GROUPS = sorted(path.name for path in conf_dir().iterdir() if path.is_dir())


def test_default_config_composes_to_the_schema() -> None:
    cfg = compose()
    assert isinstance(cfg, ExplorecConfig)
    assert (cfg.data.name, cfg.split.name, cfg.encoder.name) == ("ml100k", "leave_last_out", "minilm")


@pytest.mark.parametrize(
    ("group", "option"),
    [(group, path.stem) for group in GROUPS for path in sorted((conf_dir() / group).glob("*.yaml"))],
)
def test_every_group_option_composes(group: str, option: str) -> None:
    overrides = [f"{group}={option}"]
    if option == "coat_random":
        overrides.append("data=coat")
    cfg = compose(overrides)
    assert isinstance(cfg, ExplorecConfig)


def test_overrides_reach_typed_fields() -> None:
    cfg = compose(["split=random_ratio", "split.seed=7", "data.rating_threshold=4"])
    assert cfg.split.seed == 7
    assert cfg.data.rating_threshold == 4.0


@pytest.mark.parametrize(
    ("override", "key"),
    [("data.colour=red", "data.colour"), ("+data.colour=red", "data.colour"), ("+colour=red", "colour")],
)
def test_unknown_keys_fail_naming_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        compose([override])


def test_wrong_type_fails_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"data\.k_core"):
        compose(["data.k_core=many"])


def test_unknown_group_option_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError, match="ml100k"):
        compose(["data=imaginary"])


def test_values_outside_the_known_choices_fail() -> None:
    with pytest.raises(ConfigError, match=r"data\.name"):
        validate_data_choices(compose(["data.name=imaginary"]))
    with pytest.raises(ConfigError, match="coat_random"):
        compose(["split=coat_random"])


def test_dict_round_trip_and_hash_are_stable() -> None:
    cfg = compose(["split=random_ratio"])
    assert from_dict(to_dict(cfg)) == cfg
    assert config_hash(cfg) == config_hash(from_dict(to_dict(cfg)))
    assert config_hash(cfg) != config_hash(compose(["split=leave_last_out"]))


def test_conf_dir_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EXPLOREC_CONF_DIR", str(tmp_path))
    assert conf_dir() == tmp_path.resolve()
