"""LinUCB/Thompson posteriors, semantic-cluster shares and k-means, and MMR against hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest

from explorec.policies.linear import LinUCBPolicy, ThompsonPolicy
from explorec.policies.mmr import MMRPolicy
from explorec.policies.semantic import ClusterUserState, SemanticClusterPolicy, kmeans


@pytest.mark.parametrize("policy_class", [LinUCBPolicy, ThompsonPolicy])
def test_rank_one_updates_equal_the_batch_posterior(policy_class, catalogue) -> None:
    policy = policy_class(exploration_rate=0.5, item_vectors=catalogue.item_vectors, prior_precision=2.0)
    state = policy.initial_state(history_items=np.array([0]))
    rng = np.random.default_rng(0)
    items = rng.integers(0, catalogue.scores.size, size=25)
    rewards = (rng.random(25) < 0.3).astype(float)
    for start in range(0, 25, 5):
        policy.update(
            state=state,
            items=items[start : start + 5],
            rewards=rewards[start : start + 5],
            scores=catalogue.scores,
        )
    x = catalogue.item_vectors[items]
    precision = 2.0 * np.eye(x.shape[1]) + x.T @ x  # A = λI + Σ x xᵀ
    target = rewards - catalogue.scores[items]  # the model learns reward − score
    np.testing.assert_allclose(state.a_inverse, np.linalg.inv(precision), atol=1e-10)
    np.testing.assert_allclose(state.theta_mean, np.linalg.solve(precision, x.T @ target), atol=1e-10)


def test_linucb_prefers_the_direction_it_has_not_observed() -> None:
    # Items: 0 = e1 (score 0.30), 1 = e2 (score 0.29), 2 = -e1 (score 0.0). After 50 observations of e1 with
    # reward = score (residual 0): A = diag(51, 1); widths: e1 → 1/sqrt(51) = 0.14, e2 → 1.
    # rate 0.1, scale 1: UCB(0) = 0.30 + 0.1·0.14 = 0.314; UCB(1) = 0.29 + 0.1 = 0.39 → item 1 first.
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    scores = np.array([0.30, 0.29, 0.0])
    policy = LinUCBPolicy(exploration_rate=0.1, item_vectors=vectors, exploration_scale=1.0)
    state = policy.initial_state(history_items=np.empty(0, np.int64))
    policy.update(state=state, items=np.zeros(50, np.int64), rewards=np.full(50, 0.30), scores=scores)
    slate = policy.select(
        scores=scores, excluded=np.zeros(3, bool), k=2, rng=np.random.default_rng(0), state=state
    )
    np.testing.assert_array_equal(slate.items, [1, 0])
    np.testing.assert_array_equal(slate.greedy_items, [0, 1])
    np.testing.assert_array_equal(slate.explored, [True, False])
    assert slate.deviation_rate == 1.0


def test_linear_posterior_mean_moves_towards_rewards() -> None:
    # One item e1 clicked 10 times at score 0.1, λ = 1: θ̂₁ = 10·0.9 / (1 + 10) = 0.818 → mean 0.918 > item 1.
    vectors = np.array([[1.0, 0.0], [0.0, 1.0]])
    scores = np.array([0.1, 0.5])
    policy = ThompsonPolicy(exploration_rate=0.0, item_vectors=vectors)
    state = policy.initial_state(history_items=np.empty(0, np.int64))
    policy.update(state=state, items=np.zeros(10, np.int64), rewards=np.ones(10), scores=scores)
    np.testing.assert_allclose(state.theta_mean, [9 / 11, 0.0])
    slate = policy.select(
        scores=scores, excluded=np.zeros(2, bool), k=2, rng=np.random.default_rng(0), state=state
    )
    np.testing.assert_array_equal(slate.items, [0, 1])


@pytest.mark.parametrize("policy_class", [LinUCBPolicy, ThompsonPolicy])
def test_feedback_weight_counts_each_observation_w_times(policy_class) -> None:
    # e1 clicked 10 times at score 0.1, λ = 1, weight w = 0.1: A₁₁ = 1 + 0.1·10 = 2, b₁ = 0.1·10·0.9 = 0.9,
    # θ̂₁ = 0.45 (0.818 unweighted); the unobserved direction keeps its prior width 1.
    vectors = np.array([[1.0, 0.0], [0.0, 1.0]])
    scores = np.array([0.1, 0.5])
    policy = policy_class(exploration_rate=0.0, item_vectors=vectors, feedback_weight=0.1)
    state = policy.initial_state(history_items=np.empty(0, np.int64))
    policy.update(state=state, items=np.zeros(10, np.int64), rewards=np.ones(10), scores=scores)
    np.testing.assert_allclose(state.theta_mean, [0.45, 0.0])
    np.testing.assert_allclose(state.a_inverse, np.diag([0.5, 1.0]))
    with pytest.raises(ValueError, match="feedback_weight must be positive"):
        policy_class(exploration_rate=0.0, item_vectors=vectors, feedback_weight=0.0)


def test_thompson_monte_carlo_propensities_track_frequencies(catalogue) -> None:
    # 8 candidates, k = 2: the estimated slate probability (product over slots) of the most frequent slate
    # should be close to its frequency over 3,000 served draws (MC estimates of 2,000 draws; loose tolerance).
    scores = catalogue.scores[:8]
    policy = ThompsonPolicy(
        exploration_rate=1.0,
        item_vectors=catalogue.item_vectors[:8],
        exploration_scale=0.05,
        propensity_draws=2_000,
    )
    rng = np.random.default_rng(3)
    excluded = np.zeros(8, bool)
    slates = [policy.select(scores=scores, excluded=excluded, k=2, rng=rng) for _ in range(3_000)]
    keys = [tuple(s.items) for s in slates]
    top = max(set(keys), key=keys.count)
    frequency = keys.count(top) / len(keys)
    estimates = [np.prod(s.propensities) for s, key in zip(slates, keys, strict=True) if key == top]
    assert 0.05 < frequency < 0.95
    assert np.mean(estimates) == pytest.approx(frequency, abs=0.03)
    nan_policy = ThompsonPolicy(
        exploration_rate=1.0, item_vectors=catalogue.item_vectors[:8], propensity_draws=0
    )
    assert np.isnan(nan_policy.select(scores=scores, excluded=excluded, k=2, rng=rng).propensities).all()


def test_thompson_candidates_are_the_top_m_by_mean(catalogue) -> None:
    policy = ThompsonPolicy(
        exploration_rate=1.0, item_vectors=catalogue.item_vectors, n_candidates=6, exploration_scale=10.0
    )
    top_six = set(np.argsort(-catalogue.scores)[:6].tolist())
    rng = np.random.default_rng(4)
    excluded = np.zeros(catalogue.scores.size, bool)
    for _ in range(200):
        slate = policy.select(scores=catalogue.scores, excluded=excluded, k=3, rng=rng)
        assert set(slate.items.tolist()) <= top_six


def test_kmeans_recovers_separated_clusters(catalogue) -> None:
    _, labels = kmeans(vectors=catalogue.text_embeddings, n_clusters=3, rng=np.random.default_rng(0))
    # Same partition as the generating clusters, up to renaming: each true cluster maps to one label.
    for cluster in range(3):
        assert np.unique(labels[catalogue.item_clusters == cluster]).size == 1
    assert np.unique(labels).size == 3


def test_semantic_cluster_builds_its_clusters_from_text(catalogue) -> None:
    policy = SemanticClusterPolicy(
        exploration_rate=0.5, text_embeddings=catalogue.text_embeddings, n_clusters=3
    )
    for cluster in range(3):
        assert np.unique(policy.item_clusters[catalogue.item_clusters == cluster]).size == 1


def test_semantic_cluster_gives_the_configured_share_to_unengaged_clusters(catalogue) -> None:
    rate = 0.3
    policy = SemanticClusterPolicy(exploration_rate=rate, item_clusters=catalogue.item_clusters)
    # History in cluster 0 only; make all of cluster 0 score highest, so greedy never leaves it.
    scores = catalogue.scores + np.where(catalogue.item_clusters == 0, 1.0, 0.0)
    state = policy.initial_state(history_items=np.array([0, 1]))
    rng = np.random.default_rng(5)
    excluded = np.zeros(scores.size, bool)
    slates = [
        policy.select(scores=scores, excluded=excluded, k=5, rng=rng, state=state) for _ in range(2_000)
    ]
    explored = np.array([s.explored for s in slates])
    unengaged = np.array([catalogue.item_clusters[s.items] != 0 for s in slates])
    # 10,000 slots: the share's standard error is sqrt(0.3·0.7/10,000) = 0.0046; allow 4 SE.
    assert explored.mean() == pytest.approx(rate, abs=0.019)
    np.testing.assert_array_equal(explored, unengaged)


def test_semantic_cluster_beta_sampling_favours_clicked_clusters(catalogue) -> None:
    policy = SemanticClusterPolicy(exploration_rate=1.0, item_clusters=catalogue.item_clusters)
    state = ClusterUserState(
        engaged=np.array([True, False, False]),
        clicks=np.array([0.0, 20.0, 0.0]),
        skips=np.array([0.0, 0.0, 20.0]),
    )
    rng = np.random.default_rng(6)
    excluded = np.zeros(catalogue.scores.size, bool)
    slates = [
        policy.select(scores=catalogue.scores, excluded=excluded, k=2, rng=rng, state=state)
        for _ in range(200)
    ]
    clusters = catalogue.item_clusters[np.concatenate([s.items for s in slates])]
    # Beta(21, 1) against Beta(1, 21): cluster 1 wins essentially always (P ≈ 1 − 1e-11).
    assert (clusters == 1).mean() > 0.99


def test_semantic_cluster_update_counts_clicks_and_skips(catalogue) -> None:
    policy = SemanticClusterPolicy(exploration_rate=0.5, item_clusters=catalogue.item_clusters)
    state = policy.initial_state(history_items=np.array([12]))  # item 12 is in cluster 1
    policy.update(
        state=state, items=np.array([0, 1, 25]), rewards=np.array([1.0, 0.0, 0.0]), scores=catalogue.scores
    )
    np.testing.assert_array_equal(state.engaged, [False, True, False])
    np.testing.assert_array_equal(state.clicks, [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(state.skips, [1.0, 0.0, 1.0])


def test_mmr_hand_worked_case() -> None:
    # Embeddings a=(1,0), b=(1,0.1)/|·| (cos(a,b)=0.995), c=(0,1); scores 3, 2, 1 → relevance 1, 0.5, 0.
    # rate 0.5 (λ = 0.5): slot 0 = a (0.5). Slot 1: b = 0.25 − 0.5·0.995 = −0.2475, c = 0 − 0 = 0 → c.
    # Slot 2: only b left.
    embeddings = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    scores = np.array([3.0, 2.0, 1.0])
    slate = MMRPolicy(exploration_rate=0.5, text_embeddings=embeddings).select(
        scores=scores, excluded=np.zeros(3, bool), k=3, rng=np.random.default_rng(0)
    )
    np.testing.assert_array_equal(slate.items, [0, 2, 1])
    np.testing.assert_array_equal(slate.explored, [False, True, False])
    assert slate.deviation_rate == pytest.approx(2 / 3)
    # rate 0.1 (λ = 0.9): b = 0.45 − 0.1·0.995 = 0.35 > c = 0 → greedy order.
    greedy_like = MMRPolicy(exploration_rate=0.1, text_embeddings=embeddings).select(
        scores=scores, excluded=np.zeros(3, bool), k=3, rng=np.random.default_rng(0)
    )
    np.testing.assert_array_equal(greedy_like.items, [0, 1, 2])


@pytest.mark.parametrize("name", ["linucb", "thompson", "semantic_cluster"])
def test_stateful_policies_refuse_updates_without_their_state(name, catalogue) -> None:
    policy = catalogue.policy(name, 0.5)
    with pytest.raises(ValueError, match="from initial_state"):
        policy.update(state=None, items=np.array([0]), rewards=np.array([1.0]), scores=catalogue.scores)
