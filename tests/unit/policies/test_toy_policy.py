"""A policy defined and registered only here is accepted by the config, built, simulated and served."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from explorec.errors import ConfigError
from explorec.pipeline.config import load_config
from explorec.policies.base import Policy, Slate, UserState, top_k_indices
from explorec.policies.registry import policy_names, register_policy, unregister_policy
from explorec.policies.spec import PolicySpec
from explorec.simulation.environment import build_world
from explorec.simulation.recommender import stand_in_recommender
from explorec.simulation.simulate import run_simulation
from tests.unit.simulation.conftest import (
    N_ITEMS,
    N_USERS,
    small_simulate_config,
    synthetic_positives,
    synthetic_text_embeddings,
)


class ToyPolicy(Policy):
    """The greedy slate (k >= 2) with its first two items swapped with probability `exploration_rate`."""

    name = "toy"

    def _slates(self, scores: np.ndarray, excluded: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The greedy slate and the same slate with its first two items swapped."""
        greedy = top_k_indices(np.where(excluded, -np.inf, scores), k)
        return greedy, greedy[[1, 0, *range(2, k)]]

    def select(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        k: int,
        rng: np.random.Generator,
        state: UserState | None = None,
    ) -> Slate:
        """Swap the greedy slate's first two items with probability `exploration_rate`."""
        greedy, swapped = self._slates(scores, excluded, k)
        swap = bool(rng.random() < self.exploration_rate)
        items = swapped if swap else greedy
        propensities = np.ones(k)
        propensities[0] = self.exploration_rate if swap else 1.0 - self.exploration_rate
        return Slate(items, propensities, items != greedy, greedy)

    def slate_propensities(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        items: np.ndarray,
        state: UserState | None = None,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Per slot, the probability of items[s] after items[:s] (0 once the slate leaves both options)."""
        greedy, swapped = self._slates(scores, excluded, items.size)
        propensities = np.zeros(items.size)
        for slate, first in ((greedy, 1.0 - self.exploration_rate), (swapped, self.exploration_rate)):
            agrees = np.cumprod(items == slate).astype(bool)
            propensities[agrees] = 1.0
            if agrees[0]:
                propensities[0] = first
        return propensities


@pytest.fixture
def toy() -> Iterator[type[ToyPolicy]]:
    """ToyPolicy registered for one test."""
    register_policy(ToyPolicy)
    yield ToyPolicy
    unregister_policy(ToyPolicy.name)


def test_the_config_accepts_a_registered_policy_and_rejects_others(toy: type[ToyPolicy]) -> None:
    assert "toy" in policy_names()
    assert load_config(["policy.name=toy"]).policy.name == "toy"
    with pytest.raises(ConfigError, match=r"policy\.name"):
        load_config(["policy.name=unregistered_toy"])


def test_the_spec_builds_a_registered_policy(toy: type[ToyPolicy]) -> None:
    policy = PolicySpec("toy", 0.3).build()
    assert isinstance(policy, toy)
    assert policy.exploration_rate == 0.3
    scores = np.array([0.1, 0.4, 0.3, 0.2])
    slate = policy.select(scores=scores, excluded=np.zeros(4, bool), k=3, rng=np.random.default_rng(0))
    logged = policy.slate_propensities(scores=scores, excluded=np.zeros(4, bool), items=slate.items)
    np.testing.assert_allclose(logged, slate.propensities)


def test_the_simulator_runs_a_registered_policy(toy: type[ToyPolicy], tmp_path: Path) -> None:
    cfg = replace(
        small_simulate_config(),
        policy_rates={"toy": [0.3]},
        ope_logging_policy="toy@0.3",
        ope_target_policies=["greedy_online"],
    )
    world = build_world(positives=synthetic_positives(), n_users=N_USERS, n_items=N_ITEMS, cfg=cfg)
    recommender = stand_in_recommender(
        training=world.training, n_users=N_USERS, n_items=N_ITEMS, users=world.pools.simulated, dimension=6
    )
    result = run_simulation(
        world=world,
        recommender=recommender,
        text_embeddings=synthetic_text_embeddings(),
        cfg=cfg,
        output_dir=tmp_path,
    )
    rows = result.per_replication[result.per_replication["policy"] == "toy@0.3"]
    assert len(rows) == len(cfg.calibrations) * cfg.n_replications
    assert set(rows["policy_name"]) == {"toy"} and set(rows["exploration_rate"]) == {0.3}
    logs = result.logs[result.logs["policy"] == "toy@0.3"]
    first = logs.loc[logs["slot"] == 0, "propensity"]
    assert set(np.round(first, 12)) == {0.3, 0.7}
    assert (logs.loc[logs["slot"] > 0, "propensity"] == 1.0).all()


def test_the_serve_form_offers_a_registered_policy(toy: type[ToyPolicy]) -> None:
    from flows.serve import deployments

    served = {deployment.flow_name: deployment for deployment in deployments()}
    properties = served["tune"]._parameter_openapi_schema.model_dump()["properties"]
    assert "toy" in properties["policy"]["enum"]


def test_the_form_choice_of_a_registered_policy_composes(toy: type[ToyPolicy]) -> None:
    from flows.serve import form_overrides

    overrides = form_overrides(policy="toy")
    assert overrides == ["policy.name=toy"]  # no conf/policy/toy.yaml: the name on the schema's defaults
    assert load_config(overrides).policy.name == "toy"
    assert form_overrides(policy="mmr") == ["policy=mmr"]  # a built-in keeps its group option
