"""`slate_propensities` scores logged slates: it agrees with what `select` logged and sums to one per slot."""

from __future__ import annotations

import numpy as np
import pytest

from explorec.policies.registry import policy_names

K = 4
EXACT = [name for name in policy_names() if name != "thompson"]


def _served_state(policy, catalogue):
    """A state after two visits, so the linear and cluster policies are not at their prior."""
    state = policy.initial_state(history_items=np.array([1, 2, 3]))
    rng = np.random.default_rng(0)
    excluded = np.zeros(catalogue.scores.size, bool)
    for rewards in (np.array([1.0, 0, 0, 1]), np.array([0.0, 1, 0, 0])):
        slate = policy.select(scores=catalogue.scores, excluded=excluded, k=K, rng=rng, state=state)
        policy.update(state=state, items=slate.items, rewards=rewards, scores=catalogue.scores)
    return state


@pytest.mark.parametrize("rate", [0.3, 1.0])
@pytest.mark.parametrize("name", EXACT)
def test_scoring_a_served_slate_returns_its_logged_propensities(name, rate, catalogue) -> None:
    policy = catalogue.policy(name, rate)
    state = _served_state(policy, catalogue)
    excluded = np.zeros(catalogue.scores.size, bool)
    excluded[[5, 9]] = True
    rng = np.random.default_rng(1)
    for _ in range(20):
        slate = policy.select(scores=catalogue.scores, excluded=excluded, k=K, rng=rng, state=state)
        scored = policy.slate_propensities(
            scores=catalogue.scores, excluded=excluded, items=slate.items, state=state
        )
        np.testing.assert_allclose(scored, slate.propensities, rtol=1e-9)


def test_thompson_scoring_agrees_with_its_logged_estimates(catalogue) -> None:
    policy = catalogue.policy("thompson", 1.0)
    policy.propensity_draws = 4_000
    state = _served_state(policy, catalogue)
    excluded = np.zeros(catalogue.scores.size, bool)
    slate = policy.select(
        scores=catalogue.scores, excluded=excluded, k=2, rng=np.random.default_rng(2), state=state
    )
    scored = policy.slate_propensities(
        scores=catalogue.scores,
        excluded=excluded,
        items=slate.items,
        state=state,
        rng=np.random.default_rng(3),
    )
    # Two independent Monte Carlo estimates of the same conditional probabilities (4,000 draws each).
    np.testing.assert_allclose(scored, slate.propensities, atol=0.08)
    with pytest.raises(ValueError, match="needs a numpy Generator"):
        policy.slate_propensities(scores=catalogue.scores, excluded=excluded, items=slate.items, state=state)


@pytest.mark.parametrize("name", policy_names())
def test_slot_propensities_sum_to_one_over_every_possible_item(name, catalogue) -> None:
    policy = catalogue.policy(name, 0.4)
    state = _served_state(policy, catalogue)
    excluded = np.zeros(catalogue.scores.size, bool)
    excluded[[5, 9]] = True
    allowed = np.flatnonzero(~excluded)

    def propensities(items: list[int]) -> np.ndarray:
        # The same seed for Thompson: every candidate is scored against the same posterior draws.
        return policy.slate_propensities(
            scores=catalogue.scores,
            excluded=excluded,
            items=np.array(items),
            state=state,
            rng=np.random.default_rng(4),
        )

    first = np.array([propensities([item])[0] for item in allowed])
    assert first.sum() == pytest.approx(1.0, abs=1e-6)
    # Given a first slot, the second slot's probabilities over the remaining items also sum to one.
    prefix = int(allowed[np.argmax(first)])
    second = np.array([propensities([prefix, item])[1] for item in allowed if item != prefix])
    assert second.sum() == pytest.approx(1.0, abs=1e-6)
    assert propensities([5])[0] == 0.0  # an excluded item could never have been served


def test_epsilon_greedy_scores_another_policys_slate_by_hand(catalogue) -> None:
    # ε = 0.5 over 30 items; logged slate = [worst item, best item]. Slot 0: 0.5/30 = 0.016667.
    # Slot 1: the best is still the best remaining → 0.5 + 0.5/29 = 0.517241.
    policy = catalogue.policy("epsilon_greedy", 0.5)
    order = np.argsort(-catalogue.scores)
    scored = policy.slate_propensities(
        scores=catalogue.scores, excluded=np.zeros(30, bool), items=np.array([order[-1], order[0]])
    )
    np.testing.assert_allclose(scored, [0.5 / 30, 0.5 + 0.5 / 29])
    with pytest.raises(ValueError, match="distinct items"):
        policy.slate_propensities(
            scores=catalogue.scores, excluded=np.zeros(30, bool), items=np.array([1, 1])
        )
