"""The search space is TuneConfig's (conf/tune/ options add to it), every override reaches it; bad specs fail
with the key named."""

from __future__ import annotations

import pytest

from explorec.config import compose
from explorec.config.tuning import (
    ParameterSpec,
    TuneConfig,
    flat_space,
    validate_parameter,
    validate_tune_config,
)
from explorec.errors import ConfigError


def test_default_group_searches_embedding_size_and_exploration_rate() -> None:
    tune = compose([]).tune
    space = flat_space(tune.search_space)
    assert space["model.embedding_dim"].choices == [16, 32, 64, 128, 256]
    assert (space["policy.exploration_rate"].low, space["policy.exploration_rate"].high) == (0.0, 0.5)
    assert tune.storage == "sqlite:///mlruns/optuna.db"
    assert tune.mode == "multi"


def test_overrides_change_and_remove_dimensions() -> None:
    tune = compose(
        [
            "tune=wide",
            "tune.n_trials=3",
            "tune.search_space.model.embedding_dim.choices=[8,16]",
            "~tune.search_space.policy.exploration_rate",
        ]
    ).tune
    space = flat_space(tune.search_space)
    assert tune.n_trials == 3
    assert space["model.embedding_dim"].choices == [8, 16]
    assert "policy.exploration_rate" not in space
    assert space["policy.name"].choices == ["epsilon_greedy", "boltzmann", "mmr"]


def test_pruned_group_is_single_objective() -> None:
    tune = compose(["tune=pruned"]).tune
    assert tune.mode == "single"
    assert tune.pruner.name == "successive_halving"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+tune.bogus=1"], "bogus"),
        (["tune.mode=pareto"], "tune.mode"),
        (["tune.sampler=cmaes"], "tune.sampler"),
        (["tune.diversity_objective=gini"], "tune.diversity_objective"),
        (["tune.search_space.model.embedding_dim.choices=[]"], "choices"),
    ],
)
def test_bad_tune_settings_fail_with_the_key_named(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        compose(overrides)


def test_parameter_specs_are_checked() -> None:
    with pytest.raises(ConfigError, match="low <= high"):
        validate_parameter("model.dropout", ParameterSpec(type="float", low=0.5, high=0.1))
    with pytest.raises(ConfigError, match="log scale"):
        validate_parameter("model.learning_rate", ParameterSpec(type="float", low=0.0, high=1.0, log=True))
    with pytest.raises(ConfigError, match="empty"):
        validate_tune_config(TuneConfig(search_space={}))
