"""A trial's suggestions map onto the nested config dataclasses; policy paths set the served policy."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from explorec.config import ExplorecConfig
from explorec.errors import ConfigError
from explorec.policies.spec import PolicySpec
from explorec.tuning.space import apply_suggestions, apply_trial


def test_suggestions_set_nested_fields_without_touching_the_original() -> None:
    cfg = ExplorecConfig()
    tuned = apply_suggestions(cfg, {"model.embedding_dim": 128, "model.learning_rate": 0.01})
    assert (tuned.model.embedding_dim, tuned.model.learning_rate) == (128, 0.01)
    assert cfg.model.embedding_dim == 64
    assert tuned.trainer == cfg.trainer


def test_three_levels_deep() -> None:
    tuned = apply_suggestions(ExplorecConfig(), {"data.synthetic.n_users": 7})
    assert tuned.data.synthetic.n_users == 7


@pytest.mark.parametrize("path", ["model.embedding_size", "modle.embedding_dim", "model.embedding_dim.x"])
def test_unknown_paths_fail(path: str) -> None:
    with pytest.raises(ConfigError, match="cannot set"):
        apply_suggestions(ExplorecConfig(), {path: 1})


def test_policy_paths_set_the_policy_and_the_rest_the_run_config() -> None:
    cfg, policy = apply_trial(
        ExplorecConfig(),
        PolicySpec("epsilon_greedy", 0.1),
        {"model.embedding_dim": 32, "policy.exploration_rate": 0.4, "policy.name": "boltzmann"},
    )
    assert cfg.model.embedding_dim == 32
    assert policy == PolicySpec("boltzmann", 0.4)


@dataclass
class _WithPolicy:
    """A root config that has its own policy section (the schema once `policy` is added)."""

    policy: PolicySpec = field(default_factory=PolicySpec)
    seed: int = 0


def test_a_config_with_a_policy_section_takes_policy_paths_itself() -> None:
    cfg, policy = apply_trial(_WithPolicy(), PolicySpec("greedy", 0.0), {"policy.exploration_rate": 0.3})
    assert cfg.policy.exploration_rate == 0.3
    assert policy == PolicySpec("epsilon_greedy", 0.3)
