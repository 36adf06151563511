"""with_exploration_floor: the logged per-slot propensities are the served mixture's conditional probabilities
(checked against frequencies over many seeded draws), with the floor over every allowed item or over the
policy's best few; a zero floor serves the policy unchanged."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from explorec.policies.simple import EpsilonGreedyPolicy, GreedyPolicy
from explorec.policies.slates import floor_pool_items, with_exploration_floor

SCORES = np.array([0.9, 0.8, 0.5, 0.3, 0.2, 0.1])
EXCLUDED = np.array([False, False, False, False, True, False])


@pytest.mark.parametrize(
    ("policy", "pool"),
    [
        (GreedyPolicy(exploration_rate=0.0), None),
        (EpsilonGreedyPolicy(exploration_rate=0.3), None),
        (EpsilonGreedyPolicy(exploration_rate=0.3), 3),
    ],
)
def test_propensities_match_the_served_frequencies(policy, pool) -> None:
    """P(slot 0 = a) and P(slot 1 = b | slot 0 = a) logged equal the frequencies of 40,000 draws."""
    rng = np.random.default_rng(0)
    first, pairs, logged = Counter(), Counter(), {}
    n = 40_000
    for _ in range(n):
        base = policy.select(scores=SCORES, excluded=EXCLUDED, k=2, rng=rng)
        slate = with_exploration_floor(
            policy, base, scores=SCORES, excluded=EXCLUDED, state=None, rng=rng, floor=0.25, pool=pool
        )
        a, b = (int(item) for item in slate.items)
        first[a] += 1
        pairs[(a, b)] += 1
        logged[(a, b)] = tuple(slate.propensities)
    assert 4 not in first  # excluded items are never served
    for (a, b), (p0, p1) in logged.items():
        assert first[a] / n == pytest.approx(p0, abs=0.01)
        if first[a] > 2000:
            assert pairs[(a, b)] / first[a] == pytest.approx(p1, abs=0.03)
    assert all(p0 > 0 and p1 > 0 for p0, p1 in logged.values())
    assert len(first) == 5  # every allowed item reaches slot 0, greedy included


def test_zero_floor_serves_the_policy() -> None:
    """floor 0 returns the policy's own slate."""
    rng = np.random.default_rng(1)
    policy = GreedyPolicy(exploration_rate=0.0)
    base = policy.select(scores=SCORES, excluded=EXCLUDED, k=3, rng=rng)
    same = with_exploration_floor(
        policy, base, scores=SCORES, excluded=EXCLUDED, state=None, rng=rng, floor=0.0
    )
    assert same is base


def test_a_pooled_floor_draws_only_the_best_allowed_items() -> None:
    """With pool 3, greedy traffic shows only the 3 best allowed items; excluded ones never count."""
    rng = np.random.default_rng(2)
    policy = GreedyPolicy(exploration_rate=0.0)
    shown: set[int] = set()
    for _ in range(2000):
        base = policy.select(scores=SCORES, excluded=EXCLUDED, k=2, rng=rng)
        slate = with_exploration_floor(
            policy, base, scores=SCORES, excluded=EXCLUDED, state=None, rng=rng, floor=0.5, pool=3
        )
        shown.update(int(item) for item in slate.items)
    assert shown == {0, 1, 2}
    assert set(floor_pool_items(SCORES, EXCLUDED, k=2, pool=1)) == {0, 1}  # widened to the slate
    assert set(floor_pool_items(SCORES, EXCLUDED, k=2, pool=None)) == {0, 1, 2, 3, 5}
