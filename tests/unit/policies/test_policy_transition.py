"""interest_transition: cluster transitions counted from histories, the next novel cluster proposed from
them, exploring slots retrieved from it, and propensities that equal the served frequencies."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from explorec.policies.registry import policy_class
from explorec.policies.semantic import cluster_names
from explorec.policies.spec import PolicySpec
from explorec.policies.transition import (
    InterestTransitionPolicy,
    TransitionUserState,
    cluster_transition_counts,
)

# Items 0, 1 in cluster 0; 2, 3 in cluster 1; 4, 5 in cluster 2; 6, 7 in cluster 3.
CLUSTERS = np.array([0, 0, 1, 1, 2, 2, 3, 3])
SCORES = np.array([0.9, 0.8, 0.5, 0.4, 0.3, 0.2, 0.7, 0.1])
# From cluster 0 people moved on to 1 (6 times) and 2 (2 times), never to 3 (smoothing gives it 1).
COUNTS = np.array([[0.0, 6.0, 2.0, 0.0], [1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]])


def _policy(rate: float) -> InterestTransitionPolicy:
    return InterestTransitionPolicy(exploration_rate=rate, item_clusters=CLUSTERS, cluster_transitions=COUNTS)


def test_transition_counts_by_hand() -> None:
    # Histories (CSR): [0, 1, 2, 4] and [2, 6, 0]: clusters 0 0 1 2 | 1 3 0.
    # Changes within a history: 0→1, 1→2, 1→3, 3→0; the pair across histories (2 → 1) is not counted.
    counts = cluster_transition_counts(
        history_items=np.array([0, 1, 2, 4, 2, 6, 0]),
        history_offsets=np.array([0, 4, 4, 7]),  # the second user has no history
        item_clusters=CLUSTERS,
        n_clusters=4,
    )
    expected = np.zeros((4, 4))
    for source, target in [(0, 1), (1, 2), (1, 3), (3, 0)]:
        expected[source, target] = 1.0
    np.testing.assert_array_equal(counts, expected)


def test_transition_probabilities_are_smoothed_without_self_transitions() -> None:
    policy = _policy(0.5)
    # Row 0: counts (·, 6, 2, 0) + 1 each off the diagonal = 7, 3, 1 of 11.
    np.testing.assert_allclose(policy.transitions[0], [0.0, 7 / 11, 3 / 11, 1 / 11])
    np.testing.assert_allclose(policy.transitions.sum(axis=1), 1.0)


def test_it_is_registered_and_built_from_histories_or_counts() -> None:
    assert policy_class("interest_transition") is InterestTransitionPolicy
    spec = PolicySpec("interest_transition", 0.3)
    histories = spec.history_resources(history_items=np.array([0, 2, 4]), history_offsets=np.array([0, 3]))
    assert (
        PolicySpec("semantic_cluster", 0.3).history_resources(
            history_items=np.array([0]), history_offsets=np.array([0, 1])
        )
        == {}
    )
    built = spec.build(item_clusters=CLUSTERS, **histories)
    np.testing.assert_array_equal(built.transition_counts[[0, 1], [1, 2]], [1.0, 1.0])
    with pytest.raises(ValueError, match="training histories"):
        PolicySpec("interest_transition", 0.3).build(item_clusters=CLUSTERS)


def test_exploring_slots_come_from_the_proposed_novel_cluster_at_the_transition_rate() -> None:
    # Engaged: cluster 0 (history item 1). Novel: 1, 2, 3 with q = 7/11, 3/11, 1/11 from context [0].
    # At rate 1 every slot explores inside the proposed cluster, so a slate is one cluster's best two items.
    policy = _policy(1.0)
    rng = np.random.default_rng(0)
    excluded = np.zeros(8, dtype=bool)
    excluded[1] = True
    seen = Counter()
    n = 6000
    for _ in range(n):
        state = policy.initial_state(history_items=np.array([1]))
        slate = policy.select(scores=SCORES, excluded=excluded, k=2, rng=rng, state=state)
        clusters = set(CLUSTERS[slate.items].tolist())
        assert len(clusters) == 1 and 0 not in clusters and slate.explored.all()
        seen[clusters.pop()] += 1
    for cluster, probability in zip([1, 2, 3], [7 / 11, 3 / 11, 1 / 11], strict=True):
        assert seen[cluster] / n == pytest.approx(probability, abs=4.5 * np.sqrt(probability / n))


def _check_frequencies(items: np.ndarray, propensities: np.ndarray) -> None:
    """Each ordered slate's frequency lies within 4.5 standard errors of its slot propensities' product."""
    counts = Counter(map(tuple, items))
    joint: dict[tuple[int, ...], float] = {}
    for slate, slots in zip(map(tuple, items), propensities, strict=True):
        assert joint.setdefault(slate, float(np.prod(slots))) == pytest.approx(float(np.prod(slots)))
    n = len(items)
    for slate, count in counts.items():
        p = joint[slate]
        assert abs(count / n - p) <= 4.5 * np.sqrt(p * (1 - p) / n) + 1e-12, (slate, count / n, p)
    assert sum(joint.values()) == pytest.approx(1.0, abs=1e-9)  # every possible slate was drawn


@pytest.mark.parametrize("rate", [0.3, 0.8])
def test_logged_propensities_equal_the_frequencies_of_many_seeded_draws(rate: float) -> None:
    # k = 3 of 7 allowed items: slates mix greedy slots and exploring slots of the proposed cluster (whose
    # items can run out), so later slots' propensities depend on what the earlier ones reveal.
    policy = _policy(rate)
    excluded = np.zeros(8, dtype=bool)
    excluded[1] = True
    n = 30_000
    states = [policy.initial_state(history_items=np.array([1])) for _ in range(n)]
    batch = policy.select_batch(
        scores=np.tile(SCORES, (n, 1)),
        excluded=np.tile(excluded, (n, 1)),
        k=3,
        rng=np.random.default_rng(11),
        states=states,
    )
    _check_frequencies(batch.items, batch.propensities)
    # the per-slot formula for a logged slate gives the served propensities back
    for row in range(0, n, 997):
        logged = policy.slate_propensities(
            scores=SCORES, excluded=excluded, items=batch.items[row], state=states[row]
        )
        np.testing.assert_allclose(logged, batch.propensities[row], rtol=1e-12)


def test_single_draws_give_the_batch_draw_for_draw() -> None:
    policy = _policy(0.5)
    excluded = np.zeros(8, dtype=bool)
    states = [policy.initial_state(history_items=np.array([0, 6])) for _ in range(50)]
    batch = policy.select_batch(
        scores=np.tile(SCORES, (50, 1)),
        excluded=np.tile(excluded, (50, 1)),
        k=3,
        rng=np.random.default_rng(2),
        states=states,
    )
    rng = np.random.default_rng(2)
    for row in range(50):
        slate = policy.select(scores=SCORES, excluded=excluded, k=3, rng=rng, state=states[row])
        np.testing.assert_array_equal(slate.items, batch.items[row])
        np.testing.assert_array_equal(slate.propensities, batch.propensities[row])


def test_a_click_makes_its_cluster_engaged_and_moves_the_context() -> None:
    policy = InterestTransitionPolicy(
        exploration_rate=0.5, item_clusters=CLUSTERS, cluster_transitions=COUNTS, context_length=2
    )
    state = policy.initial_state(history_items=np.array([0, 1, 6]))
    assert state.context == [0, 3] and state.engaged.tolist() == [True, False, False, True]
    policy.update(state=state, items=np.array([2, 4]), rewards=np.array([1.0, 0.0]), scores=SCORES)
    assert state.context == [3, 1]  # only the click counts; the context keeps the last two
    assert state.engaged.tolist() == [True, True, False, True]
    # the next proposal follows P(· | 3) + P(· | 1): cluster 2 is the only novel one left
    weights = policy.proposal_weights(state)
    assert weights[2] == pytest.approx(policy.transitions[3, 2] + policy.transitions[1, 2])


def test_without_a_novel_cluster_it_serves_the_greedy_slate() -> None:
    policy = _policy(1.0)
    state = TransitionUserState(engaged=np.ones(4, dtype=bool), context=[0])
    slate = policy.select(
        scores=SCORES, excluded=np.zeros(8, bool), k=3, rng=np.random.default_rng(0), state=state
    )
    np.testing.assert_array_equal(slate.items, [0, 1, 6])
    np.testing.assert_array_equal(slate.propensities, [1.0, 1.0, 1.0])
    assert not slate.explored.any()


def test_clusters_are_named_by_their_most_central_titles() -> None:
    # Angles: cluster 0 holds A 0°, B 6.3°, C 45° (mean direction 16.8°); cluster 1 D 90°, E 73.3°, F 84.3°
    # (mean direction 82.5°). Nearest the mean first: B, A; then F, D.
    text = np.array([[1.0, 0.0], [0.9, 0.1], [0.5, 0.5], [0.0, 1.0], [0.3, 1.0], [0.1, 1.0]])
    names = cluster_names(
        text_embeddings=text, item_clusters=np.array([0, 0, 0, 1, 1, 1]), titles=list("ABCDEF"), n_titles=2
    )
    assert names == ["B / A", "F / D"]
    repeated = cluster_names(
        text_embeddings=text, item_clusters=np.array([0, 0, 0, 1, 1, 1]), titles=list("BBCDEF"), n_titles=2
    )
    assert repeated[0] == "B / C"  # a title that appears twice is named once
