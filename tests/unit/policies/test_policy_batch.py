"""Batched serving equals per-user serving: same slates, propensities, flags and Generator draws.

linucb, thompson, semantic_cluster and mmr (and greedy) promise that `select_batch` equals `select` called
row by row with the same Generator, draw for draw; ε-greedy and Boltzmann only promise the same law (their
batch tests are in test_policy_propensities). Scores are rounded so that many items tie, exclusions differ
per row, states evolve over several visits, and one text cluster is smaller than a slate.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from explorec.policies.base import Policy, top_k_indices, top_k_rows
from explorec.policies.linear import ThompsonPolicy, _prefix_match_counts_rows
from explorec.policies.semantic import argmax_probability_rows, beta_argmax_probabilities
from explorec.policies.spec import PolicySpec

EXACT_POLICIES = ("greedy", "linucb", "thompson", "semantic_cluster", "mmr")
N_USERS, N_ITEMS, K, VISITS = 9, 64, 5, 4
CLUSTER_SIZES = (26, 20, 12, 3, 3)  # two clusters have fewer items than a slate


def _world(seed: int) -> dict[str, np.ndarray]:
    """Tied scores, per-row exclusions, item vectors (two pairs identical) and text clusters."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(N_ITEMS, 4))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[1], vectors[7] = vectors[0], vectors[6]
    clusters = np.repeat(np.arange(len(CLUSTER_SIZES)), CLUSTER_SIZES)
    text = np.eye(len(CLUSTER_SIZES), 8)[clusters] * 3.0 + rng.normal(size=(N_ITEMS, 8))
    excluded = rng.random((N_USERS, N_ITEMS)) < 0.2
    excluded[0] = False
    return {
        "scores": np.round(rng.random((N_USERS, N_ITEMS)), 1),  # about ten items share each value
        "excluded": excluded,
        "vectors": vectors,
        "clusters": clusters,
        "text": text,
    }


def _policy(name: str, rate: float, world: dict[str, np.ndarray], **extra: object) -> Policy:
    """Build policy `name` on the test world."""
    params: dict[str, object] = {
        "linucb": {"item_vectors": world["vectors"], "n_candidates": 12},
        "thompson": {"item_vectors": world["vectors"], "n_candidates": 12, "propensity_draws": 32},
        "semantic_cluster": {"item_clusters": world["clusters"]},
        "mmr": {"text_embeddings": world["text"], "n_candidates": 15},
    }.get(name, {})
    return PolicySpec(name, rate).build(**params, **extra)


def _assert_same(batch_value: np.ndarray, row_values: list[np.ndarray], what: str) -> None:
    """Exact equality (NaN equal to NaN)."""
    np.testing.assert_array_equal(batch_value, np.stack(row_values), err_msg=what, strict=True)


@pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("name", EXACT_POLICIES)
def test_batch_equals_per_user_calls_draw_for_draw(name: str, rate: float) -> None:
    world = _world(seed=11)
    policy = _policy(name, rate, world)
    # Even users engaged with the two small clusters; odd users did not (a small cluster may run out).
    histories = [np.array([user, 30 + user] + [58, 61] * (user % 2 == 0)) for user in range(N_USERS)]
    batch_states = [policy.initial_state(history_items=h) for h in histories]
    row_states = copy.deepcopy(batch_states)
    batch_rng, row_rng = np.random.default_rng(5), np.random.default_rng(5)
    rewards_rng = np.random.default_rng(6)
    excluded = world["excluded"].copy()
    for visit in range(VISITS):
        scores = world["scores"] + 0.05 * visit * (np.arange(N_ITEMS) % 3 == 0)
        batch = policy.select_batch(scores=scores, excluded=excluded, k=K, rng=batch_rng, states=batch_states)
        rows = [
            policy.select(scores=scores[u], excluded=excluded[u], k=K, rng=row_rng, state=row_states[u])
            for u in range(N_USERS)
        ]
        for field in ("items", "propensities", "explored", "greedy_items"):
            _assert_same(getattr(batch, field), [getattr(r, field) for r in rows], f"{field}, visit {visit}")
        assert batch_rng.bit_generator.state == row_rng.bit_generator.state, "draws consumed differently"
        rewards = (rewards_rng.random((N_USERS, K)) < 0.4).astype(float)
        for u in range(N_USERS):
            for states in (batch_states, row_states):
                policy.update(state=states[u], items=batch.items[u], rewards=rewards[u], scores=scores[u])
        excluded[np.arange(N_USERS)[:, None], batch.items] = True


def test_the_semantic_batch_follows_clusters_that_run_out_within_the_slate() -> None:
    # Clusters 3 and 4 hold three items each: exploring every slot, some rows use a small cluster up, so the
    # eligible set (and the choice probabilities) change within the slate.
    world = _world(seed=11)
    policy = _policy("semantic_cluster", 1.0, world)
    states = [policy.initial_state(history_items=np.array([0])) for _ in range(N_USERS)]
    excluded = world["excluded"].copy()
    excluded[1:4, 58:] = True  # rows 1-3 have no item left in the two small clusters
    batch = policy.select_batch(
        scores=world["scores"], excluded=excluded, k=K, rng=np.random.default_rng(0), states=states
    )
    rng = np.random.default_rng(0)
    for u in range(N_USERS):
        row = policy.select(scores=world["scores"][u], excluded=excluded[u], k=K, rng=rng, state=states[u])
        np.testing.assert_array_equal(batch.items[u], row.items)
        np.testing.assert_array_equal(batch.propensities[u], row.propensities)
    assert batch.explored.all()
    small = [np.flatnonzero(world["clusters"] == c) for c in (3, 4)]
    used_up = [
        np.isin(members[~excluded[u, members]], batch.items[u]).all() and (~excluded[u, members]).any()
        for u in range(N_USERS)
        for members in small
    ]
    assert any(used_up), "no row used a small cluster up: the test lost its point"


@pytest.mark.parametrize("name", ["linucb", "thompson", "mmr"])
def test_rows_with_fewer_candidates_than_m_are_served_one_by_one(name: str) -> None:
    world = _world(seed=3)
    policy = _policy(name, 0.5, world)
    excluded = np.zeros((3, N_ITEMS), dtype=bool)
    excluded[1, 8:] = True  # row 1 has 8 items left, fewer than n_candidates
    states = [policy.initial_state(history_items=np.array([0])) for _ in range(3)]
    batch = policy.select_batch(
        scores=world["scores"][:3], excluded=excluded, k=K, rng=np.random.default_rng(1), states=states
    )
    rng = np.random.default_rng(1)
    for u in range(3):
        row = policy.select(scores=world["scores"][u], excluded=excluded[u], k=K, rng=rng, state=states[u])
        np.testing.assert_array_equal(batch.items[u], row.items)
        np.testing.assert_array_equal(batch.propensities[u], row.propensities)


def test_top_k_rows_breaks_ties_by_lower_index_like_top_k_indices() -> None:
    rng = np.random.default_rng(0)
    values = np.round(rng.random((200, 40)), 1)
    values[::7, :] = 0.5  # whole rows tied
    values[::5, 3] = -np.inf
    for k in (1, 3, 10, 40):
        ranked = top_k_rows(values, k)
        for row in range(values.shape[0]):
            np.testing.assert_array_equal(ranked[row], top_k_indices(values[row], k))


@pytest.mark.parametrize("special_row", ["none", "one_big_tie", "too_few_finite"])
@pytest.mark.parametrize("decimals", [1, 2, 6])
def test_top_k_rows_on_long_rows_with_the_block_prefilter(decimals: int, special_row: str) -> None:
    # Long rows (n ≥ 32k) take the block prefilter; coarse rounding makes ties across block boundaries.
    # A row tied throughout keeps every block; a row with fewer finite values than k skips the prefilter.
    rng = np.random.default_rng(decimals)
    values = np.round(rng.random((60, 1_700)), decimals)
    values[rng.random(values.shape) < 0.3] = -np.inf
    if special_row == "one_big_tie":
        values[7, :] = 0.25
    elif special_row == "too_few_finite":
        values[5, :] = -np.inf
        values[5, [3, 900, 1_699]] = 0.5
    for k in (1, 5, 10, 40):
        ranked = top_k_rows(values, k)
        for row in range(values.shape[0]):
            np.testing.assert_array_equal(ranked[row], top_k_indices(values[row], k))


def test_argmax_probabilities_of_a_row_do_not_depend_on_the_other_rows() -> None:
    rng = np.random.default_rng(2)
    alpha = 1.0 + rng.integers(0, 4, size=(6, 7)).astype(float)
    beta = 1.0 + rng.integers(0, 30, size=(6, 7)).astype(float)
    mask = rng.random((6, 7)) < 0.6
    mask[0] = False
    together = argmax_probability_rows(alpha=alpha, beta=beta, mask=mask)
    for row in range(6):
        alone = argmax_probability_rows(
            alpha=alpha[row : row + 1], beta=beta[row : row + 1], mask=mask[row : row + 1]
        )
        np.testing.assert_array_equal(together[row], alone[0])
        assert (together[row][~mask[row]] == 0).all()
        if mask[row].any():
            assert together[row].sum() == pytest.approx(1.0)
            np.testing.assert_allclose(
                together[row][mask[row]],
                beta_argmax_probabilities(alpha=alpha[row][mask[row]], beta=beta[row][mask[row]]),
                rtol=1e-12,
                atol=1e-15,
            )


def test_thompson_propensities_stay_valid_when_items_have_identical_vectors() -> None:
    # Pairs of items with the same vector and score tie in every posterior draw. The served draw's slate
    # must be ranked by the same tie rule when counting matches: before the fix the served draw did not
    # match its own slate and propensities came out 0 or NaN (0 / 0).
    rng = np.random.default_rng(0)
    n_items = 30
    vectors = rng.normal(size=(n_items, 3))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = rng.random(n_items)
    vectors[1::2], scores[1::2] = vectors[::2], scores[::2]
    policy = ThompsonPolicy(
        exploration_rate=1.0,
        item_vectors=vectors,
        n_candidates=20,
        exploration_scale=0.3,
        propensity_draws=64,
    )
    serve_rng = np.random.default_rng(0)
    for _ in range(50):
        slate = policy.select(scores=scores, excluded=np.zeros(n_items, bool), k=4, rng=serve_rng)
        assert np.all((slate.propensities > 0) & (slate.propensities <= 1)), slate.propensities
        for slot in range(1, 4):
            # The twin of the previous slot's item ties with it in every draw, so it always comes next.
            if slate.items[slot] == slate.items[slot - 1] + 1 and slate.items[slot] % 2 == 1:
                assert slate.propensities[slot] == 1.0


def test_prefix_match_counts_equal_ranking_every_draw() -> None:
    # Reference: rank each draw with top_k_indices and compare prefixes with the slate, slot by slot.
    rng = np.random.default_rng(4)
    draws = np.round(rng.normal(size=(5, 300, 9)), 1)  # coarse values: many ties within a draw
    slates = np.stack([rng.permutation(9)[:4] for _ in range(5)])
    slates[0] = top_k_indices(draws[0, 0], 4)
    slates[4, 2] = -1  # an item that is not a candidate never matches
    matching, before = _prefix_match_counts_rows(draws, slates)
    for row in range(5):
        ranked = np.stack([top_k_indices(draw, 4) for draw in draws[row]])
        prefix = np.cumprod(ranked == slates[row], axis=1).astype(bool)
        np.testing.assert_array_equal(matching[row], prefix.sum(axis=0))
        np.testing.assert_array_equal(before[row], np.concatenate([[300], prefix.sum(axis=0)[:-1]]))
    assert matching[0, -1] >= 1 and matching[4, 2:].sum() == 0


@pytest.mark.parametrize("rate", [0.3, 1.0])
def test_mmr_without_the_item_by_item_matrix_serves_the_same_slates_alone_and_in_a_batch(rate: float) -> None:
    # a catalogue whose E·Eᵀ exceeds the configured size computes each picked item's cosines to its candidates
    world = _world(seed=11)
    kept = _policy("mmr", rate, world)
    direct = _policy("mmr", rate, world, similarity_matrix_bytes=0)
    assert kept._keeps_matrix and not direct._keeps_matrix
    states = [direct.initial_state(history_items=np.array([u])) for u in range(N_USERS)]
    scores, excluded = world["scores"], world["excluded"]
    batch = direct.select_batch(
        scores=scores, excluded=excluded, k=K, rng=np.random.default_rng(0), states=states
    )
    assert direct._matrix is None  # nothing items x items was built
    rows = [
        direct.select(
            scores=scores[u], excluded=excluded[u], k=K, rng=np.random.default_rng(0), state=states[u]
        )
        for u in range(N_USERS)
    ]
    for field in ("items", "propensities", "explored", "greedy_items"):
        _assert_same(getattr(batch, field), [getattr(r, field) for r in rows], field)
    reference = kept.select_batch(
        scores=scores, excluded=excluded, k=K, rng=np.random.default_rng(0), states=states
    )
    np.testing.assert_array_equal(batch.items, reference.items)
    logged = batch.items[0]
    np.testing.assert_array_equal(
        direct.slate_propensities(scores=scores[0], excluded=excluded[0], items=logged),
        kept.slate_propensities(scores=scores[0], excluded=excluded[0], items=logged),
    )
