"""The full-ranking harness: masking, exactness, tie-aware (expected) metrics and batch invariance."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pytest
import scipy.sparse as sp

from explorec.evaluation.harness import (
    evaluated_users,
    first_hit_probability,
    full_ranking_evaluate,
    full_ranking_per_user,
    top_k_items,
)
from explorec.evaluation.ranking import RANKING_METRICS, hit_matrix
from explorec.evaluation.scoring import ScoreMatrix


def _csr(rows: list[list[int]]) -> sp.csr_matrix:
    """Build a binary CSR matrix from 0/1 rows."""
    return sp.csr_matrix(np.array(rows, dtype=np.float32))


def _fixed_scores(scores: np.ndarray) -> ScoreMatrix:
    """Return a scorer that looks rows up in a fixed score matrix."""
    return ScoreMatrix(scores)


def test_top_k_orders_by_score_then_lower_index() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.9, 0.2]])
    np.testing.assert_array_equal(top_k_items(scores, 3), [[1, 3, 2]])


def test_top_k_breaks_ties_at_the_cut_off_towards_lower_indices() -> None:
    # Five items tie for the top score: the top 2 must be items 0 and 1, whatever argpartition picked.
    scores = np.array([[1.0, 1.0, 1.0, 1.0, 1.0, 0.0], [0.0, 2.0, 2.0, 2.0, 2.0, 2.0]])
    np.testing.assert_array_equal(top_k_items(scores, 2), [[0, 1], [1, 2]])


def test_top_k_matches_a_stable_full_sort_on_random_ties() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(200, 40)).astype(np.float32)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(top_k_items(scores, 10), expected)


def test_top_k_excludes_rows_without_changing_the_input() -> None:
    scores = np.array([[5.0, 4.0, 3.0, 2.0]])
    original = scores.copy()
    ranked = top_k_items(scores, 2, exclude_rows=_csr([[1, 0, 1, 0]]))
    np.testing.assert_array_equal(ranked, [[1, 3]])
    np.testing.assert_array_equal(scores, original)


def test_top_k_caps_k_at_the_catalogue_size() -> None:
    assert top_k_items(np.array([[0.2, 0.1]]), 5).shape == (1, 2)


def test_top_k_rejects_nan_scores() -> None:
    with pytest.raises(ValueError, match="NaN"):
        top_k_items(np.array([[0.2, np.nan]]), 1)


def test_train_items_never_appear_in_the_top_k() -> None:
    rng = np.random.default_rng(1)
    n_users, n_items = 30, 25
    train = sp.random(n_users, n_items, density=0.3, format="csr", random_state=2)
    train.data[:] = 1.0
    # Train items get the highest scores; they must still be masked out.
    scores = rng.random((n_users, n_items)) + 10.0 * train.toarray()
    ranked = top_k_items(scores, 10, exclude_rows=train)
    train_dense = train.toarray().astype(bool)
    assert not np.take_along_axis(train_dense, ranked, axis=1).any()


def test_excluded_validation_items_cannot_be_hits_or_take_slots() -> None:
    # One user, 4 items. Item 0 train, item 1 validation (scored highest), item 2 test target.
    train, valid, test = _csr([[1, 0, 0, 0]]), _csr([[0, 1, 0, 0]]), _csr([[0, 0, 1, 0]])
    scores = np.array([[9.0, 8.0, 7.0, 1.0]])
    with_valid = full_ranking_evaluate(_fixed_scores(scores), targets=test, exclude=train + valid, ks=(1,))
    train_only = full_ranking_evaluate(_fixed_scores(scores), targets=test, exclude=train, ks=(1,))
    assert with_valid["hit@1"] == 1.0
    assert train_only["hit@1"] == 0.0


def test_hand_computed_metrics_for_two_users() -> None:
    # User 0: train item 0; targets {1, 3}; ranking after masking: 3, 4, 1, 2 → hits at ranks 1 and 3.
    # User 1: train item 4; target {2}; ranking after masking: 0, 1, 2, 3 → hit at rank 3.
    # User 2: no target → not evaluated.
    train = _csr([[1, 0, 0, 0, 0], [0, 0, 0, 0, 1], [1, 0, 0, 0, 0]])
    test = _csr([[0, 1, 0, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]])
    scores = np.array(
        [[9.0, 0.5, 0.1, 0.9, 0.7], [0.9, 0.8, 0.7, 0.6, 5.0], [1.0, 1.0, 1.0, 1.0, 1.0]], dtype=np.float32
    )
    result = full_ranking_evaluate(_fixed_scores(scores), targets=test, exclude=train, ks=(2, 3))
    assert result["n_users"] == 2.0
    # recall@2: user 0 1/2, user 1 0/1 → 0.25; recall@3: 2/2 and 1/1 → 1.
    assert result["recall@2"] == pytest.approx(0.25)
    assert result["recall@3"] == pytest.approx(1.0)
    # ndcg@3: user 0 (1 + 1/2) / (1 + 1/log2 3) = 0.919720789; user 1 (1/log2 4) / 1 = 0.5 → mean 0.709860395.
    assert result["ndcg@3"] == pytest.approx((0.9197207891481876 + 0.5) / 2)
    # mrr@3: user 0 1, user 1 1/3 → 2/3.  hit@2: user 0 yes, user 1 no.
    assert result["mrr@3"] == pytest.approx(2.0 / 3.0)
    assert result["hit@2"] == pytest.approx(0.5)
    assert set(result) == {f"{m}@{k}" for m in ("recall", "ndcg", "hit", "mrr") for k in (2, 3)} | {"n_users"}


def test_perfect_scorer_scores_one_everywhere() -> None:
    rng = np.random.default_rng(3)
    test = sp.random(40, 60, density=0.05, format="csr", random_state=4)
    test.data[:] = 1.0
    train = sp.csr_matrix(test.shape, dtype=np.float32)
    scores = test.toarray() + 0.01 * rng.random(test.shape)
    result = full_ranking_evaluate(_fixed_scores(scores), targets=test, exclude=train, ks=(10,))
    for key in ("ndcg@10", "hit@10", "mrr@10"):
        assert result[key] == pytest.approx(1.0), key
    # Recall@10 is 1 only for users with at most 10 targets; here every user has fewer.
    assert result["recall@10"] == pytest.approx(1.0)


def test_batch_size_does_not_change_results() -> None:
    rng = np.random.default_rng(5)
    train = sp.random(57, 40, density=0.2, format="csr", random_state=6)
    test = sp.random(57, 40, density=0.05, format="csr", random_state=7)
    scores = np.round(rng.random((57, 40)), 1)  # rounding creates many ties
    results = [
        full_ranking_evaluate(_fixed_scores(scores), targets=test, exclude=train, batch_size=size, ks=(5, 10))
        for size in (1, 7, 1024)
    ]
    assert results[0] == results[1] == results[2]


def test_tied_scores_count_by_their_expectation_over_tie_orders() -> None:
    # All 4 scores equal, target item 1: its rank is uniform on 1..4, so with K = 3 it is listed with
    # probability 3/4; MRR@3 = (1 + 1/2 + 1/3) / 4, NDCG@3 = (1 + 1/log2 3 + 1/2) / 4.
    # (A tie-break by index would put it at rank 2: MRR 1/2, NDCG 1/log2 3.)
    test = _csr([[0, 1, 0, 0]])
    empty = sp.csr_matrix((1, 4), dtype=np.float32)
    result = full_ranking_evaluate(_fixed_scores(np.zeros((1, 4))), targets=test, exclude=empty, ks=(3,))
    assert result["mrr@3"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 4)
    assert result["ndcg@3"] == pytest.approx((1 + 1 / math.log2(3) + 1 / 2) / 4)
    assert result["recall@3"] == pytest.approx(0.75)
    assert result["hit@3"] == pytest.approx(0.75)


def test_a_constant_scorer_gets_chance_level_even_when_index_order_is_a_perfect_ranking() -> None:
    # Targets are the two lowest-indexed of 10 items. Ties → lower index would rank them 1st and 2nd
    # (Recall@2 = 1); a scorer that knows nothing must get chance: Recall@2 = 2/10,
    # HitRate@2 = 1 - C(8, 2) / C(10, 2) = 17/45, MRR@2 = P(rank 1) + P(first hit at rank 2) / 2
    # = 1/5 + (16/90) / 2.
    test = _csr([[1, 1] + [0] * 8])
    empty = sp.csr_matrix((1, 10), dtype=np.float32)
    result = full_ranking_evaluate(_fixed_scores(np.zeros((1, 10))), targets=test, exclude=empty, ks=(2,))
    assert result["recall@2"] == pytest.approx(0.2)
    assert result["hit@2"] == pytest.approx(17 / 45)
    assert result["mrr@2"] == pytest.approx(1 / 5 + 8 / 90)


def test_a_tie_across_the_cut_off_shares_its_slots_among_all_tied_items() -> None:
    # Scores 1, .5, .5, .5 and the target is item 3, outside an index-ordered top 2: one of the three tied
    # items takes rank 2, so the target is there with probability 1/3.
    test = _csr([[0, 0, 0, 1]])
    empty = sp.csr_matrix((1, 4), dtype=np.float32)
    result = full_ranking_evaluate(
        _fixed_scores(np.array([[1.0, 0.5, 0.5, 0.5]])), targets=test, exclude=empty, ks=(2,)
    )
    assert result["hit@2"] == pytest.approx(1 / 3)
    assert result["mrr@2"] == pytest.approx(1 / 6)


def test_expected_metrics_equal_the_average_over_every_tie_order() -> None:
    # Brute force: rank by score with each permutation of the items as tie-break, average the metrics.
    rng = np.random.default_rng(11)
    for _ in range(40):
        n_items = int(rng.integers(3, 7))
        scores = rng.integers(0, 3, size=(1, n_items)).astype(np.float64)
        relevant = rng.random((1, n_items)) < 0.4
        relevant[0, rng.integers(n_items)] = True
        excluded = (rng.random((1, n_items)) < 0.25) & ~relevant
        ks = (1, 2, n_items + 1)
        _, per_user = full_ranking_per_user(
            _fixed_scores(scores), targets=sp.csr_matrix(relevant), exclude=sp.csr_matrix(excluded), ks=ks
        )
        masked = np.where(excluded, -np.inf, scores)[0]
        totals = dict.fromkeys(per_user, 0.0)
        orders = list(itertools.permutations(range(n_items)))
        for tie_break in orders:
            order = np.lexsort((np.array(tie_break), -masked))
            hits = np.zeros((1, n_items + 1), dtype=bool)
            hits[0, :n_items] = relevant[0, order] & (masked[order] > -np.inf)
            for k in ks:
                for name, metric in RANKING_METRICS.items():
                    value = metric(hits=hits, n_relevant=np.array([relevant.sum()]), k=k)[0]
                    totals[f"{name}@{k}"] += value / len(orders)
        for key, value in totals.items():
            assert per_user[key][0] == pytest.approx(value, abs=1e-12), key


def test_without_ties_the_metrics_are_those_of_the_ranking() -> None:
    rng = np.random.default_rng(12)
    train = sp.random(50, 30, density=0.2, format="csr", random_state=13)
    test = sp.random(50, 30, density=0.1, format="csr", random_state=14)
    scores = rng.random((50, 30))
    users, per_user = full_ranking_per_user(_fixed_scores(scores), targets=test, exclude=train, ks=(5, 10))
    ranked = top_k_items(scores[users], 10, exclude_rows=train[users])
    hits = hit_matrix(ranked=ranked, relevant=sp.csr_matrix(test[users] > 0))
    n_relevant = np.diff(sp.csr_matrix(test[users] > 0).indptr)
    for k in (5, 10):
        for name, metric in RANKING_METRICS.items():
            expected = metric(hits=hits, n_relevant=n_relevant, k=k)
            np.testing.assert_allclose(per_user[f"{name}@{k}"], expected, err_msg=f"{name}@{k}")


def test_first_hit_probability_is_a_distribution_over_positions() -> None:
    # 2 targets among 5 tied items: the first is at position j with probability C(5 - j, 1) / C(5, 2).
    positions = np.arange(1, 6)
    probabilities = first_hit_probability(np.full(5, 5), np.full(5, 2), positions)
    np.testing.assert_allclose(probabilities, [0.4, 0.3, 0.2, 0.1, 0.0])
    assert first_hit_probability(np.array(3), np.array(0), np.array(1)) == 0.0


def test_only_requested_users_with_targets_are_evaluated() -> None:
    test = _csr([[1, 0], [0, 1], [0, 0], [1, 1]])
    np.testing.assert_array_equal(evaluated_users(test), [0, 1, 3])
    np.testing.assert_array_equal(evaluated_users(test, np.array([3, 2, 1, 3])), [1, 3])
    seen: list[int] = []

    class Recording:
        def score(self, users: np.ndarray, history_splits: Sequence[str]) -> np.ndarray:
            seen.extend(users.tolist())
            return np.zeros((len(users), 2))

    result = full_ranking_evaluate(
        Recording(), targets=test, exclude=sp.csr_matrix((4, 2)), ks=(1,), users=np.array([2, 3])
    )
    assert seen == [3]
    assert result["n_users"] == 1.0


def test_wrong_score_shape_is_rejected() -> None:
    test = _csr([[1, 0, 0]])
    with pytest.raises(ValueError, match="the scorer returned shape"):
        full_ranking_evaluate(_fixed_scores(np.zeros((1, 2))), targets=test, exclude=test, ks=(1,))


def test_no_user_with_targets_is_an_error() -> None:
    empty = sp.csr_matrix((3, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="no user to evaluate"):
        full_ranking_evaluate(_fixed_scores(np.zeros((3, 4))), targets=empty, exclude=empty)


def test_mismatched_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="same shape"):
        full_ranking_evaluate(
            _fixed_scores(np.zeros((1, 4))), targets=_csr([[1, 0, 0, 0]]), exclude=_csr([[1, 0, 0]])
        )


def test_k_larger_than_the_catalogue_counts_missing_slots_as_misses() -> None:
    # 3 items, K = 5: ranking 0, 1, 2; the target (item 2) is at rank 3 → NDCG 1/log2(4) = 0.5.
    test = _csr([[0, 0, 1]])
    empty = sp.csr_matrix((1, 3), dtype=np.float32)
    result = full_ranking_evaluate(
        _fixed_scores(-np.arange(3.0)[None, :]), targets=test, exclude=empty, ks=(5,)
    )
    assert result["ndcg@5"] == pytest.approx(0.5)
    assert result["recall@5"] == pytest.approx(1.0)


def test_an_excluded_target_is_never_a_hit_even_when_it_fills_the_list() -> None:
    # Item 0 is both excluded and a target; with K = 2 over 2 items it fills rank 2 but must not count.
    both = _csr([[1, 0]])
    result = full_ranking_evaluate(_fixed_scores(np.ones((1, 2))), targets=both, exclude=both, ks=(2,))
    assert result["hit@2"] == 0.0


def test_per_user_values_follow_the_evaluated_users_and_average_to_the_summary() -> None:
    # Users 0 and 2 have targets; user 0's target ranks 1st (NDCG 1), user 2's ranks 2nd (NDCG 1/log2 3).
    test = _csr([[1, 0, 0], [0, 0, 0], [0, 1, 0]])
    empty = sp.csr_matrix((3, 3), dtype=np.float32)
    scores = np.array([[3.0, 2.0, 1.0], [0.0, 0.0, 0.0], [3.0, 2.0, 1.0]])
    users, per_user = full_ranking_per_user(_fixed_scores(scores), targets=test, exclude=empty, ks=(2,))
    np.testing.assert_array_equal(users, [0, 2])
    np.testing.assert_allclose(per_user["ndcg@2"], [1.0, 0.6309297535714575])
    summary = full_ranking_evaluate(_fixed_scores(scores), targets=test, exclude=empty, ks=(2,))
    assert summary["ndcg@2"] == pytest.approx(per_user["ndcg@2"].mean())
