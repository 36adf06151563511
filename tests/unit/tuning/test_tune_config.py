"""The search space lives in conf/tune/ and every override reaches it; bad specs fail with the key named."""

from __future__ import annotations

import pytest

from explorec.errors import ConfigError
from explorec.tuning.config import (
    ParameterSpec,
    TuneConfig,
    flat_space,
    load_tune_config,
    validate_parameter,
    validate_tune_config,
)


def test_default_group_searches_embedding_size_and_exploration_rate() -> None:
    tune = load_tune_config("default")
    space = flat_space(tune.search_space)
    assert space["model.embedding_dim"].choices == [16, 32, 64, 128, 256]
    assert (space["policy.exploration_rate"].low, space["policy.exploration_rate"].high) == (0.0, 0.5)
    assert tune.storage == "sqlite:///mlruns/optuna.db"
    assert tune.mode == "multi"


def test_overrides_add_change_and_remove_dimensions() -> None:
    tune = load_tune_config(
        "wide",
        [
            "n_trials=3",
            "search_space.model.embedding_dim.choices=[8,16]",
            "+search_space.model.dropout={type:float,low:0.0,high:0.3}",
            "~search_space.policy.exploration_rate",
        ],
    )
    space = flat_space(tune.search_space)
    assert tune.n_trials == 3
    assert space["model.embedding_dim"].choices == [8, 16]
    assert space["model.dropout"] == ParameterSpec(type="float", low=0.0, high=0.3)
    assert "policy.exploration_rate" not in space
    assert space["policy.name"].choices == ["epsilon_greedy", "boltzmann", "mmr"]


def test_pruned_group_is_single_objective() -> None:
    tune = load_tune_config("pruned")
    assert tune.mode == "single"
    assert tune.pruner.name == "successive_halving"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["bogus=1"], "bogus"),
        (["mode=pareto"], "tune.mode"),
        (["sampler=cmaes"], "tune.sampler"),
        (["diversity_objective=gini"], "tune.diversity_objective"),
        (["search_space.model.embedding_dim.choices=[]"], "choices"),
    ],
)
def test_bad_tune_settings_fail_with_the_key_named(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_tune_config("default", overrides)


def test_parameter_specs_are_checked() -> None:
    with pytest.raises(ConfigError, match="low <= high"):
        validate_parameter("model.dropout", ParameterSpec(type="float", low=0.5, high=0.1))
    with pytest.raises(ConfigError, match="log scale"):
        validate_parameter("model.learning_rate", ParameterSpec(type="float", low=0.0, high=1.0, log=True))
    with pytest.raises(ConfigError, match="empty"):
        validate_tune_config(TuneConfig(search_space={}))
