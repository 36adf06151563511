"""A tiny seeded synthetic world for simulator tests: latent-taste positives, text embeddings, config."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from explorec.config.simulation import CalibrationTarget, SimulateConfig

N_USERS, N_ITEMS = 60, 90


def synthetic_positives(*, n_users: int = N_USERS, n_items: int = N_ITEMS, seed: int = 0) -> pd.DataFrame:
    """Positives from a 3-taste latent model: 12–24 items per user, drawn by softmax of taste affinity."""
    rng = np.random.default_rng(seed)
    user_taste = rng.normal(size=(n_users, 4))
    item_taste = rng.normal(size=(n_items, 4))
    rows = []
    for user in range(n_users):
        logits = 1.5 * item_taste @ user_taste[user]
        weights = np.exp(logits - logits.max())
        items = rng.choice(n_items, size=int(rng.integers(12, 25)), replace=False, p=weights / weights.sum())
        rows += [(user, int(item), int(rng.integers(0, 10_000))) for item in items]
    return pd.DataFrame(rows, columns=["user_idx", "item_idx", "timestamp"])


@pytest.fixture
def positives() -> pd.DataFrame:
    """The synthetic positives."""
    return synthetic_positives()


def synthetic_text_embeddings() -> np.ndarray:
    """Random 16-d text embeddings of every item."""
    return np.random.default_rng(1).normal(size=(N_ITEMS, 16))


@pytest.fixture
def text_embeddings() -> np.ndarray:
    """Random 16-d text embeddings of every item."""
    return synthetic_text_embeddings()


@pytest.fixture
def small_config() -> SimulateConfig:
    """The small configuration."""
    return small_simulate_config()


def small_simulate_config() -> SimulateConfig:
    """A fast configuration: 15 test users, 4 visits of 3 slots, 3 replications, six exploring setups."""
    return SimulateConfig(
        seed=3,
        min_user_positives=10,
        tune_users=12,
        test_users=15,
        n_visits=4,
        slate_size=3,
        n_replications=3,
        ease_l2_grid=[5.0, 50.0],
        calibrations=[CalibrationTarget("main", 0.1, 0.35), CalibrationTarget("sparse", 0.08, 0.25)],
        policy_rates={
            "epsilon_greedy": [0.0, 0.3],
            "boltzmann": [0.5],
            "linucb": [1.0],
            "semantic_cluster": [0.3],
            "linucb_novelty": [1.0],
        },
        n_candidates=20,
        n_text_clusters=4,
        ope_logging_policy="epsilon_greedy@0.3",
        ope_target_policies=["greedy_online"],
        stand_in_dimension=6,
    )
