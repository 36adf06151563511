"""linucb_novelty: LinUCB with a text-cluster novelty bonus (in the policy registry)."""

from __future__ import annotations

import numpy as np
import pytest

from explorec.policies.base import Policy
from explorec.policies.linear import LinUCBPolicy
from explorec.policies.novelty import LinUCBNoveltyPolicy, NoveltyUserState

N_ITEMS, N_CLUSTERS, DIMENSION = 40, 5, 4


def _world(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct positive scores, unit item vectors and 5 clusters of 8 items."""
    rng = np.random.default_rng(seed)
    scores = rng.permutation(np.arange(1, N_ITEMS + 1)) / 100.0
    vectors = rng.normal(size=(N_ITEMS, DIMENSION))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return scores, vectors, np.repeat(np.arange(N_CLUSTERS), N_ITEMS // N_CLUSTERS)


def _policy(rate: float = 1.0, novelty_scale: float = 0.5, **params: object) -> LinUCBNoveltyPolicy:
    """The policy on `_world()` with a fixed exploration scale."""
    _, vectors, clusters = _world()
    params = {"n_candidates": 12, "exploration_scale": 0.05, **params}
    return LinUCBNoveltyPolicy(
        exploration_rate=rate,
        item_vectors=vectors,
        item_clusters=clusters,
        novelty_scale=novelty_scale,
        **params,
    )


def _lived_state(policy: LinUCBNoveltyPolicy, scores: np.ndarray, seed: int) -> NoveltyUserState:
    """A state after a random history and three visits of random clicks."""
    rng = np.random.default_rng(seed)
    state = policy.initial_state(
        history_items=rng.choice(N_ITEMS, size=int(rng.integers(0, 12)), replace=False)
    )
    for _ in range(3):
        items = rng.choice(N_ITEMS, size=4, replace=False)
        policy.update(state=state, items=items, rewards=(rng.random(4) < 0.3).astype(float), scores=scores)
    return state


def test_novelty_bonus_by_hand() -> None:
    """λ = 0.5, α = 0: novel items count 1.5× their score, only the first one of a cluster in a slate."""
    policy = LinUCBNoveltyPolicy(
        exploration_rate=1.0,
        item_vectors=np.eye(6),
        item_clusters=np.array([0, 0, 1, 1, 2, 2]),
        novelty_scale=0.5,
        exploration_scale=0.0,
    )
    scores = np.array([0.50, 0.45, 0.40, 0.30, 0.22, 0.10])
    excluded = np.array([True, False, False, False, False, False])
    state = policy.initial_state(history_items=np.array([0]))  # cluster 0 engaged
    # values: item 1 → 0.45, item 2 → 0.60, item 3 → 0.45 (0.30 once cluster 1 is in the slate), item 4 → 0.33
    slate = policy.select(scores=scores, excluded=excluded, k=3, rng=np.random.default_rng(0), state=state)
    np.testing.assert_array_equal(slate.items, [2, 1, 4])
    np.testing.assert_array_equal(slate.explored, [True, False, True])  # greedy slate [1, 2, 3]
    np.testing.assert_array_equal(slate.propensities, [1.0, 1.0, 1.0])
    policy.observe_clusters(state=state, items=slate.items, clicks=np.array([False, False, True]))
    np.testing.assert_array_equal(state.engaged, [True, False, True])  # the click engaged cluster 2
    np.testing.assert_allclose(policy.novelty(state), [0.0, 0.5, 0.0])  # cluster 1 served once


def test_without_novelty_it_serves_linucbs_slates() -> None:
    scores, vectors, _ = _world()
    novelty = _policy(novelty_scale=0.0)
    linucb = LinUCBPolicy(exploration_rate=1.0, item_vectors=vectors, n_candidates=12, exploration_scale=0.05)
    for seed in range(5):
        state = _lived_state(novelty, scores, seed)
        excluded = np.zeros(N_ITEMS, dtype=bool)
        excluded[np.random.default_rng(seed).choice(N_ITEMS, size=6, replace=False)] = True
        rng = np.random.default_rng(seed)
        ours = novelty.select(scores=scores, excluded=excluded, k=5, rng=rng, state=state)
        theirs = linucb.select(scores=scores, excluded=excluded, k=5, rng=rng, state=state.linear)
        np.testing.assert_array_equal(ours.items, theirs.items)
        np.testing.assert_array_equal(ours.explored, theirs.explored)


def test_rate_zero_serves_the_greedy_slate() -> None:
    scores, _, _ = _world()
    policy = _policy(rate=0.0)
    state = policy.initial_state(history_items=np.array([0, 9]))
    slate = policy.select(
        scores=scores, excluded=np.zeros(N_ITEMS, bool), k=6, rng=np.random.default_rng(1), state=state
    )
    np.testing.assert_array_equal(slate.items, np.argsort(-scores)[:6])
    assert not slate.explored.any()


def test_the_bonus_serves_more_unengaged_clusters_than_linucb() -> None:
    scores, _, clusters = _world()
    plain, novel = _policy(novelty_scale=0.0), _policy(novelty_scale=2.0)
    history = np.flatnonzero(np.isin(clusters, [0, 1, 2]))[::3]
    slates = [
        policy.select(
            scores=scores,
            excluded=np.isin(np.arange(N_ITEMS), history),
            k=3,
            rng=np.random.default_rng(0),
            state=policy.initial_state(history_items=history),
        ).items
        for policy in (plain, novel)
    ]
    new_clusters = [np.setdiff1d(clusters[items], clusters[history]).size for items in slates]
    assert new_clusters[1] > new_clusters[0]


@pytest.mark.parametrize("exploration_scale", [0.05, None])
def test_batch_equals_per_user_calls_including_rows_with_few_items_left(exploration_scale) -> None:
    scores, _, _ = _world()
    policy = _policy(exploration_scale=exploration_scale)
    rng = np.random.default_rng(5)
    n_rows = 6
    rows_scores = scores[None, :] + rng.normal(scale=0.01, size=(n_rows, N_ITEMS))
    excluded = rng.random((n_rows, N_ITEMS)) < 0.2
    excluded[2, :33] = True  # 7 items left: fewer than the 12 candidates
    states = [_lived_state(policy, scores, seed) for seed in range(n_rows)]
    batch = policy.select_batch(
        scores=rows_scores, excluded=excluded, k=5, rng=np.random.default_rng(0), states=states
    )
    loop = Policy.select_batch(
        policy, scores=rows_scores, excluded=excluded, k=5, rng=np.random.default_rng(0), states=states
    )
    for field in ("items", "propensities", "explored", "greedy_items"):
        np.testing.assert_array_equal(getattr(batch, field), getattr(loop, field), err_msg=field)


def test_propensities_sum_to_one_over_every_possible_item_at_every_slot() -> None:
    scores, _, _ = _world()
    policy = _policy()
    state = _lived_state(policy, scores, 3)
    excluded = np.zeros(N_ITEMS, dtype=bool)
    excluded[[4, 11, 30]] = True
    slate = policy.select(scores=scores, excluded=excluded, k=5, rng=np.random.default_rng(2), state=state)
    np.testing.assert_array_equal(
        policy.slate_propensities(scores=scores, excluded=excluded, items=slate.items, state=state),
        np.ones(5),
    )
    for slot in range(5):
        prefix = list(slate.items[:slot])
        total = 0.0
        for item in np.flatnonzero(~excluded):
            if item in prefix:
                continue
            logged = np.array([*prefix, item])
            total += policy.slate_propensities(scores=scores, excluded=excluded, items=logged, state=state)[
                -1
            ]
        assert total == pytest.approx(1.0)


def test_propensities_match_empirical_frequencies_over_many_draws() -> None:
    """Deterministic: every draw serves the slate whose logged propensities are 1."""
    scores, _, _ = _world()
    policy = _policy()
    state = _lived_state(policy, scores, 4)
    excluded = np.zeros(N_ITEMS, dtype=bool)
    slates = np.stack(
        [
            policy.select(
                scores=scores, excluded=excluded, k=4, rng=np.random.default_rng(seed), state=state
            ).items
            for seed in range(300)
        ]
    )
    for slot in range(4):
        values, counts = np.unique(slates[:, slot], return_counts=True)
        frequency = counts / slates.shape[0]
        propensity = policy.slate_propensities(scores=scores, excluded=excluded, items=slates[0], state=state)
        np.testing.assert_array_equal(values, [slates[0, slot]])
        assert frequency[0] == propensity[slot]


def test_update_moves_the_posterior_like_linucb_and_engages_clicked_clusters() -> None:
    scores, vectors, clusters = _world()
    policy = _policy()
    linucb = LinUCBPolicy(exploration_rate=1.0, item_vectors=vectors)
    state, reference = (
        policy.initial_state(history_items=np.array([0])),
        linucb.initial_state(history_items=[]),
    )
    items, rewards = np.array([9, 17, 33]), np.array([0.0, 1.0, 0.0])
    policy.update(state=state, items=items, rewards=rewards, scores=scores)
    linucb.update(state=reference, items=items, rewards=rewards, scores=scores)
    np.testing.assert_allclose(state.linear.a_inverse, reference.a_inverse)
    np.testing.assert_allclose(state.linear.b, reference.b)
    expected_engaged = np.zeros(N_CLUSTERS, dtype=bool)
    expected_engaged[[clusters[0], clusters[17]]] = True
    np.testing.assert_array_equal(state.engaged, expected_engaged)
    np.testing.assert_array_equal(state.served, np.bincount(clusters[items], minlength=N_CLUSTERS))
    with pytest.raises(ValueError, match="NoveltyUserState"):
        policy.update(state=reference, items=items, rewards=rewards, scores=scores)


def test_bad_parameters_raise() -> None:
    _, vectors, clusters = _world()
    with pytest.raises(ValueError, match="novelty_scale"):
        LinUCBNoveltyPolicy(
            exploration_rate=0.5, item_vectors=vectors, item_clusters=clusters, novelty_scale=-1
        )
    with pytest.raises(ValueError, match="item_clusters"):
        LinUCBNoveltyPolicy(exploration_rate=0.5, item_vectors=vectors, item_clusters=clusters[:-1])


def test_built_by_name_from_text_embeddings_it_uses_semantic_clusters_clusters() -> None:
    from explorec.policies.semantic import SemanticClusterPolicy
    from explorec.policies.spec import PolicySpec

    scores, vectors, clusters = _world()
    rng = np.random.default_rng(3)
    text = np.eye(N_CLUSTERS, 8)[clusters] * 4.0 + rng.normal(scale=0.2, size=(N_ITEMS, 8))
    policy = PolicySpec("linucb_novelty", 0.7).build(item_vectors=vectors, text_embeddings=text, n_clusters=5)
    semantic = SemanticClusterPolicy(exploration_rate=0.7, text_embeddings=text, n_clusters=5)
    np.testing.assert_array_equal(policy.item_clusters, semantic.item_clusters)
    # well-separated text: the k-means clusters are the planted ones, up to their numbering
    assert len({(a, b) for a, b in zip(policy.item_clusters, clusters, strict=True)}) == N_CLUSTERS
    # stateless serving (engaged = the history's clusters) serves a valid slate outside the history
    history = np.flatnonzero(clusters == clusters[np.argmax(scores)])[:3]
    excluded = np.zeros(N_ITEMS, dtype=bool)
    excluded[history] = True
    state = policy.initial_state(history_items=history)
    slate = policy.select(scores=scores, excluded=excluded, k=5, rng=np.random.default_rng(0), state=state)
    assert slate.items.size == 5 and not excluded[slate.items].any()
    with pytest.raises(ValueError, match="item_clusters or text_embeddings"):
        PolicySpec("linucb_novelty", 0.7).build(item_vectors=vectors)
