"""Load the configuration every entry point runs: compose `conf/` and check the names it chooses.

`explorec.config.compose` checks types and ranges; the names of registered things (policies, data sources,
splits, simulator recommenders) are checked here, above the layers that hold their registries.
"""

from __future__ import annotations

from collections.abc import Sequence

from explorec.config import ExplorecConfig, compose
from explorec.config.simulation import RECOMMENDERS
from explorec.data.sources import validate_data_choices
from explorec.errors import ConfigError
from explorec.policies.registry import policy_names


def load_config(overrides: Sequence[str] = ()) -> ExplorecConfig:
    """Compose `conf/config.yaml` with Hydra overrides and check every name it chooses."""
    cfg = compose(list(overrides))
    validate_choices(cfg)
    return cfg


def validate_choices(cfg: ExplorecConfig) -> None:
    """Fail on values that type-check but name nothing explorec knows."""
    validate_data_choices(cfg)
    _validate_policy_choices(cfg)
    _validate_simulation_choices(cfg)


def _validate_policy_choices(cfg: ExplorecConfig) -> None:
    """Fail on a served or studied policy that is not registered (studied ones must explore)."""
    names = policy_names()
    if cfg.policy.name not in names:
        raise ConfigError(f"policy.name={cfg.policy.name!r} is not one of {', '.join(names)}")
    policies = cfg.study.policies
    exploring = [name for name in names if name != "greedy"]
    if set(policies) - set(exploring):
        raise ConfigError(
            f"study.policies must be exploring policies among {', '.join(exploring)}, got {policies}"
        )


def _validate_simulation_choices(cfg: ExplorecConfig) -> None:
    """Fail on a simulator recommender explorec does not know."""
    if cfg.simulate.recommender not in RECOMMENDERS:
        raise ConfigError(
            f"simulate.recommender={cfg.simulate.recommender!r} is not one of {', '.join(RECOMMENDERS)}"
        )
