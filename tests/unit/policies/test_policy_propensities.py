"""Logged propensities match how often the policy really serves each slate (many seeded draws)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from explorec.policies.semantic import ClusterUserState, SemanticClusterPolicy, beta_argmax_probabilities
from explorec.policies.simple import BoltzmannPolicy, EpsilonGreedyPolicy

N_DRAWS = 20_000
# Five items, item 4 excluded; k = 2 -> 4·3 = 12 possible ordered slates.
SCORES = np.array([0.9, 0.5, 0.3, 0.1, 2.0])
EXCLUDED = np.array([False, False, False, False, True])
K = 2


def _check_slate_frequencies(slates: np.ndarray, propensities: np.ndarray, n_possible: int) -> None:
    """Each ordered slate's frequency lies within 4.5 standard errors of its slot propensities' product."""
    counts = Counter(map(tuple, slates))
    probability: dict[tuple[int, ...], float] = {}
    for slate, slot_propensities in zip(map(tuple, slates), propensities, strict=True):
        joint = float(np.prod(slot_propensities))
        assert probability.setdefault(slate, joint) == pytest.approx(joint), "one slate, two propensities"
    n = len(slates)
    for slate, count in counts.items():
        p = probability[slate]
        standard_error = np.sqrt(p * (1 - p) / n)
        assert abs(count / n - p) <= 4.5 * standard_error + 1e-12, (slate, count / n, p)
    if len(counts) == n_possible:  # every slate was seen: their probabilities must add up to 1
        assert sum(probability.values()) == pytest.approx(1.0, abs=1e-9)


def test_epsilon_greedy_propensities_by_hand() -> None:
    # ε = 0.4, 4 allowed items. Slot 0 best = item 0: P = 0.6 + 0.4/4 = 0.7; another item: 0.4/4 = 0.1.
    # Given item 0 first, slot 1 best = item 1: P = 0.6 + 0.4/3 = 0.7333; item 2: 0.4/3 = 0.1333.
    policy = EpsilonGreedyPolicy(exploration_rate=0.4)
    rng = np.random.default_rng(3)
    seen = {}
    for _ in range(200):
        slate = policy.select(scores=SCORES, excluded=EXCLUDED, k=K, rng=rng)
        seen[tuple(slate.items)] = slate.propensities
    np.testing.assert_allclose(seen[(0, 1)], [0.7, 0.6 + 0.4 / 3])
    np.testing.assert_allclose(seen[(0, 2)], [0.7, 0.4 / 3])
    np.testing.assert_allclose(seen[(2, 0)], [0.1, 0.6 + 0.4 / 3])  # item 0 is still the best remaining


@pytest.mark.parametrize("rate", [0.2, 0.7, 1.0])
def test_epsilon_greedy_propensities_match_frequencies(rate) -> None:
    policy = EpsilonGreedyPolicy(exploration_rate=rate)
    rng = np.random.default_rng(4)
    slates = [policy.select(scores=SCORES, excluded=EXCLUDED, k=K, rng=rng) for _ in range(N_DRAWS)]
    _check_slate_frequencies(
        np.array([s.items for s in slates]), np.array([s.propensities for s in slates]), n_possible=12
    )


@pytest.mark.parametrize("rate", [0.2, 0.7, 1.0])
def test_epsilon_greedy_batch_propensities_match_frequencies(rate) -> None:
    batch = EpsilonGreedyPolicy(exploration_rate=rate).select_batch(
        scores=np.tile(SCORES, (N_DRAWS, 1)),
        excluded=np.tile(EXCLUDED, (N_DRAWS, 1)),
        k=K,
        rng=np.random.default_rng(5),
    )
    _check_slate_frequencies(batch.items, batch.propensities, n_possible=12)


def test_boltzmann_propensities_by_hand() -> None:
    # temperature_scale 1, rate 0.5 -> τ = 1. Weights e^0.9, e^0.5, e^0.3, e^0.1 = 2.4596, 1.6487, 1.3499,
    # 1.1052 (sum 6.5634). Slot 0 = item 1: 1.6487/6.5634 = 0.25120; then item 0: 2.4596/4.9147 = 0.50046.
    policy = BoltzmannPolicy(exploration_rate=0.5, temperature_scale=1.0)
    rng = np.random.default_rng(6)
    for _ in range(500):
        slate = policy.select(scores=SCORES, excluded=EXCLUDED, k=K, rng=rng)
        if tuple(slate.items) == (1, 0):
            np.testing.assert_allclose(slate.propensities, [0.25120, 0.50046], atol=5e-5)
            np.testing.assert_array_equal(slate.explored, [True, False])  # slot 1: item 0 is the best left
            return
    pytest.fail("slate (1, 0) never drawn")


def test_boltzmann_propensities_match_frequencies() -> None:
    policy = BoltzmannPolicy(exploration_rate=0.5)
    rng = np.random.default_rng(7)
    slates = [policy.select(scores=SCORES, excluded=EXCLUDED, k=K, rng=rng) for _ in range(N_DRAWS)]
    _check_slate_frequencies(
        np.array([s.items for s in slates]), np.array([s.propensities for s in slates]), n_possible=12
    )


@pytest.mark.parametrize("rate", [0.1, 0.5, 1.0])
def test_boltzmann_batch_propensities_match_frequencies(rate) -> None:
    batch = BoltzmannPolicy(exploration_rate=rate).select_batch(
        scores=np.tile(SCORES, (N_DRAWS, 1)),
        excluded=np.tile(EXCLUDED, (N_DRAWS, 1)),
        k=K,
        rng=np.random.default_rng(8),
    )
    _check_slate_frequencies(batch.items, batch.propensities, n_possible=12)


def test_boltzmann_propensities_stay_exact_at_tiny_temperature() -> None:
    # τ so small that the best item holds all the float mass: slot 1 must still get a proper softmax (~1).
    policy = BoltzmannPolicy(exploration_rate=1e-6, temperature_scale=1.0)
    slate = policy.select(scores=SCORES, excluded=EXCLUDED, k=3, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(slate.items, [0, 1, 2])
    np.testing.assert_allclose(slate.propensities, [1.0, 1.0, 1.0])


def test_semantic_cluster_propensities_match_frequencies() -> None:
    # Items 0,1 in cluster 0 (engaged), 2,3 in cluster 1, 4,5 in cluster 2 (both unengaged).
    policy = SemanticClusterPolicy(exploration_rate=0.5, item_clusters=np.array([0, 0, 1, 1, 2, 2]))
    scores = np.array([0.9, 0.8, 0.5, 0.4, 0.3, 0.2])
    excluded = np.zeros(6, dtype=bool)
    state = ClusterUserState(
        engaged=np.array([True, False, False]),
        clicks=np.array([0.0, 2.0, 1.0]),
        skips=np.array([0.0, 1.0, 3.0]),
    )
    rng = np.random.default_rng(9)
    n_draws = 8_000  # about 1 ms per call (the cluster-choice integral); 4.5 SE still detects 0.02 errors
    slates = [
        policy.select(scores=scores, excluded=excluded, k=K, rng=rng, state=state) for _ in range(n_draws)
    ]
    _check_slate_frequencies(
        np.array([s.items for s in slates]), np.array([s.propensities for s in slates]), n_possible=30
    )


def test_beta_argmax_probabilities_against_closed_forms() -> None:
    # Two uniforms: 1/2 each. Beta(2,1) vs Beta(1,1): P(X>Y) = ∫ 2x·x dx = 2/3.
    np.testing.assert_allclose(
        beta_argmax_probabilities(alpha=np.ones(2), beta=np.ones(2)), [0.5, 0.5], atol=1e-4
    )
    np.testing.assert_allclose(
        beta_argmax_probabilities(alpha=np.array([2.0, 1.0]), beta=np.array([1.0, 1.0])),
        [2 / 3, 1 / 3],
        atol=1e-4,
    )
    # Against Monte Carlo for skewed parameters.
    alpha, beta = np.array([1.0, 3.0, 1.0, 2.0]), np.array([5.0, 2.0, 1.0, 9.0])
    draws = np.random.default_rng(0).beta(alpha, beta, size=(200_000, 4))
    empirical = np.bincount(draws.argmax(axis=1), minlength=4) / 200_000
    np.testing.assert_allclose(beta_argmax_probabilities(alpha=alpha, beta=beta), empirical, atol=4e-3)
