"""Slot laws and exposures: each policy's whole law of a slot agrees with its logged propensities, and the
exposure e(a) = Σ_s θ_s·P(a in slot s) averaged over its own prefixes agrees with the frequencies of many
sampled slates (the quantity the position-based off-policy estimators divide by)."""

from __future__ import annotations

import numpy as np
import pytest

from explorec.evaluation.ope import examination_weights
from explorec.policies.mmr import MMRPolicy
from explorec.policies.simple import BoltzmannPolicy, EpsilonGreedyPolicy, GreedyPolicy
from explorec.policies.slates import floor_exposure, policy_exposure, with_exploration_floor

RNG = np.random.default_rng(0)
SCORES = RNG.normal(size=12)
EXCLUDED = np.zeros(12, dtype=bool)
EXCLUDED[[3, 7]] = True
STOCHASTIC = [EpsilonGreedyPolicy(exploration_rate=0.3), BoltzmannPolicy(exploration_rate=0.4)]


@pytest.mark.parametrize("policy", [GreedyPolicy(exploration_rate=0.0), *STOCHASTIC])
def test_slot_laws_are_distributions_that_agree_with_slate_propensities(policy) -> None:
    """Rows sum to 1, put nothing on excluded or earlier items, give each logged item its propensity, and
    weighed by θ they sum to the slot exposure."""
    slate = policy.select(scores=SCORES, excluded=EXCLUDED, k=4, rng=np.random.default_rng(1))
    laws = np.stack(list(policy.slot_laws(scores=SCORES, excluded=EXCLUDED, items=slate.items)))
    assert laws.shape == (4, 12)
    np.testing.assert_allclose(laws.sum(axis=1), 1.0)
    assert not laws[:, EXCLUDED].any()
    for slot in range(1, 4):
        assert not laws[slot, slate.items[:slot]].any()
    own = policy.slate_propensities(scores=SCORES, excluded=EXCLUDED, items=slate.items)
    np.testing.assert_allclose(laws[np.arange(4), slate.items], own)
    theta = examination_weights(4)
    exposure = policy.slot_exposure(scores=SCORES, excluded=EXCLUDED, items=slate.items, examination=theta)
    np.testing.assert_allclose(exposure, theta @ laws)


@pytest.mark.parametrize("policy", STOCHASTIC)
def test_exposures_equal_the_frequencies_of_sampled_slates(policy) -> None:
    """policy_exposure over 4,000 own prefixes ≈ Σ_s θ_s·(share of 40,000 slates with the item in slot s)."""
    theta = examination_weights(4)
    rng = np.random.default_rng(2)
    counted = np.zeros(12)
    n = 40_000
    for _ in range(n):
        slate = policy.select(scores=SCORES, excluded=EXCLUDED, k=4, rng=rng)
        counted[slate.items] += theta
    exposure = policy_exposure(
        policy, scores=SCORES, excluded=EXCLUDED, state=None, examination=theta, rng=rng, draws=4000
    )
    assert exposure.sum() == pytest.approx(theta.sum())
    np.testing.assert_allclose(exposure, counted / n, atol=0.01)
    assert (exposure[~EXCLUDED] > 0).all() and not exposure[EXCLUDED].any()


def test_a_deterministic_policy_is_exposed_by_its_one_slate() -> None:
    """Greedy, and MMR (no closed-form law), expose exactly their own slate's items at θ of their slots."""
    theta = examination_weights(3)
    texts = RNG.normal(size=(12, 5))
    for policy in (
        GreedyPolicy(exploration_rate=0.0),
        MMRPolicy(exploration_rate=0.3, text_embeddings=texts),
    ):
        slate = policy.select(scores=SCORES, excluded=EXCLUDED, k=3, rng=np.random.default_rng(3))
        exposure = policy_exposure(
            policy, scores=SCORES, excluded=EXCLUDED, state=None, examination=theta, rng=RNG, draws=8
        )
        expected = np.zeros(12)
        expected[slate.items] = theta
        np.testing.assert_allclose(exposure, expected)


def test_floor_exposure_matches_the_floor_slates() -> None:
    """Uniform slates of the 5-item pool expose each pool item Σθ/5 (frequencies of 40,000 floor slates)."""
    theta = examination_weights(3)
    policy = GreedyPolicy(exploration_rate=0.0)
    rng = np.random.default_rng(4)
    counted = np.zeros(12)
    n = 40_000
    base = policy.select(scores=SCORES, excluded=EXCLUDED, k=3, rng=rng)
    for _ in range(n):
        slate = with_exploration_floor(
            policy, base, scores=SCORES, excluded=EXCLUDED, state=None, rng=rng, floor=1.0, pool=5
        )
        counted[slate.items] += theta
    exposure = floor_exposure(SCORES, EXCLUDED, examination=theta, pool=5)
    assert np.count_nonzero(exposure) == 5 and exposure.sum() == pytest.approx(theta.sum())
    np.testing.assert_allclose(exposure, counted / n, atol=0.01)
