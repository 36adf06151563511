"""Every policy keeps the contract: greedy at rate 0, no excluded or repeated items, valid propensities."""

from __future__ import annotations

import numpy as np
import pytest

from explorec.policies.base import Slate, deviation_rate
from explorec.policies.registry import policy_names
from explorec.policies.spec import PolicySpec

K = 5
RATES = (0.0, 0.3, 1.0)


def _excluded(n_items: int) -> np.ndarray:
    """Exclude items 0, 3, 6, ... (a third of the catalogue, including some of the best)."""
    excluded = np.zeros(n_items, dtype=bool)
    excluded[::3] = True
    return excluded


def _greedy(scores: np.ndarray, excluded: np.ndarray, k: int) -> np.ndarray:
    """Top k by score among non-excluded items, by a full sort (the slow obvious way)."""
    order = np.argsort(-np.where(excluded, -np.inf, scores), kind="stable")
    return order[:k]


def test_every_design_policy_is_registered() -> None:
    assert set(policy_names()) == {
        "greedy",
        "epsilon_greedy",
        "boltzmann",
        "linucb",
        "thompson",
        "semantic_cluster",
        "mmr",
        "linucb_novelty",  # beyond docs/design.md §5: LinUCB with a text-cluster novelty bonus
        "interest_transition",  # after Wang et al. (RecSys 2024): next novel cluster from transitions
    }


@pytest.mark.parametrize("name", policy_names())
def test_rate_zero_serves_the_greedy_slate(name, catalogue) -> None:
    excluded = _excluded(catalogue.scores.size)
    policy = catalogue.policy(name, 0.0)
    state = policy.initial_state(history_items=np.array([1, 2]))
    slate = policy.select(
        scores=catalogue.scores, excluded=excluded, k=K, rng=np.random.default_rng(0), state=state
    )
    np.testing.assert_array_equal(slate.items, _greedy(catalogue.scores, excluded, K))
    np.testing.assert_array_equal(slate.greedy_items, slate.items)
    np.testing.assert_array_equal(slate.propensities, np.ones(K))
    assert not slate.explored.any()
    assert slate.deviation_rate == 0.0


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("name", policy_names())
def test_slates_are_valid(name, rate, catalogue) -> None:
    excluded = _excluded(catalogue.scores.size)
    policy = catalogue.policy(name, rate)
    rng = np.random.default_rng(1)
    state = policy.initial_state(history_items=np.array([1, 2]))
    for _ in range(30):
        slate = policy.select(scores=catalogue.scores, excluded=excluded, k=K, rng=rng, state=state)
        assert slate.items.shape == slate.propensities.shape == slate.explored.shape == (K,)
        assert slate.explored.dtype == bool
        assert not excluded[slate.items].any(), "served an excluded item"
        assert np.unique(slate.items).size == K, "duplicate item in a slate"
        assert np.all((slate.propensities > 0) & (slate.propensities <= 1)), slate.propensities
        np.testing.assert_array_equal(slate.greedy_items, _greedy(catalogue.scores, excluded, K))
        # Rewards equal to the scores keep the linear models' posterior mean = scores: greedy is unchanged.
        rewards = catalogue.scores[slate.items]
        policy.update(state=state, items=slate.items, rewards=rewards, scores=catalogue.scores)


@pytest.mark.parametrize("name", policy_names())
def test_same_seed_gives_the_same_slate(name, catalogue) -> None:
    excluded = _excluded(catalogue.scores.size)
    policy = catalogue.policy(name, 0.6)

    def serve(seed: int) -> Slate:
        state = policy.initial_state(history_items=np.array([1]))
        return policy.select(
            scores=catalogue.scores, excluded=excluded, k=K, rng=np.random.default_rng(seed), state=state
        )

    first, again = serve(11), serve(11)
    np.testing.assert_array_equal(first.items, again.items)
    np.testing.assert_array_equal(first.propensities, again.propensities)


@pytest.mark.parametrize("name", policy_names())
def test_batch_serves_valid_slates_for_every_row(name, catalogue) -> None:
    n_users = 4
    scores = np.tile(catalogue.scores, (n_users, 1))
    excluded = np.zeros(scores.shape, dtype=bool)
    for row in range(n_users):
        excluded[row, row::4] = True  # each user excludes different items
    batch = catalogue.policy(name, 0.5).select_batch(
        scores=scores, excluded=excluded, k=K, rng=np.random.default_rng(2)
    )
    assert batch.items.shape == (n_users, K)
    for row in range(n_users):
        assert not excluded[row, batch.items[row]].any()
        assert np.unique(batch.items[row]).size == K
        np.testing.assert_array_equal(batch.greedy_items[row], _greedy(scores[row], excluded[row], K))
    assert np.all((batch.propensities > 0) & (batch.propensities <= 1))


def test_too_few_items_raise(catalogue) -> None:
    excluded = np.ones(catalogue.scores.size, dtype=bool)
    excluded[:3] = False
    with pytest.raises(ValueError, match="only 3 items"):
        catalogue.policy("greedy", 0.0).select(
            scores=catalogue.scores, excluded=excluded, k=4, rng=np.random.default_rng(0)
        )


def test_spec_build_rejects_unknown_names_and_rates() -> None:
    with pytest.raises(ValueError, match="unknown policy"):
        PolicySpec("softmax", 0.1).build()
    with pytest.raises(ValueError, match=r"exploration_rate must lie in \[0, 1\]"):
        PolicySpec("epsilon_greedy", 1.5).build()


def test_deviation_rate_counts_positional_differences() -> None:
    # Row 1 differs at slots 1 and 2 (same items, other order still counts); row 2 at slot 0 -> 3 of 6 slots.
    items = np.array([[4, 7, 9], [1, 2, 3]])
    greedy = np.array([[4, 9, 7], [5, 2, 3]])
    assert deviation_rate(items=items, greedy_items=greedy) == pytest.approx(0.5)
    assert deviation_rate(items=greedy, greedy_items=greedy) == 0.0
    with pytest.raises(ValueError, match="differ in shape"):
        deviation_rate(items=items[:, :2], greedy_items=greedy)
