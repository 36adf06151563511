"""Ranking metrics against limits (perfect = 1, no hits = 0) and cases worked on paper."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from explorec.evaluation.ranking import (
    RANKING_METRICS,
    hit_matrix,
    hit_rate_at_k,
    mean_over_users,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
)

ALL_METRICS = sorted(RANKING_METRICS.items())


def _hits(*rows: list[int]) -> np.ndarray:
    """Build a boolean hit matrix from 0/1 rows."""
    return np.array(rows, dtype=bool)


@pytest.mark.parametrize(("name", "metric"), ALL_METRICS)
def test_perfect_ranking_scores_one(name: str, metric) -> None:
    # Every relevant item (2 of them) sits at the top of a list of 3.
    hits = _hits([1, 1, 0], [1, 1, 0])
    values = metric(hits=hits, n_relevant=np.array([2, 2]), k=3)
    np.testing.assert_allclose(values, [1.0, 1.0], err_msg=name)


@pytest.mark.parametrize(("name", "metric"), ALL_METRICS)
def test_no_hits_scores_zero(name: str, metric) -> None:
    hits = _hits([0, 0, 0], [0, 0, 0])
    values = metric(hits=hits, n_relevant=np.array([1, 4]), k=3)
    np.testing.assert_array_equal(values, [0.0, 0.0], err_msg=name)


@pytest.mark.parametrize(("name", "metric"), ALL_METRICS)
def test_users_without_relevant_items_are_nan_and_left_out_of_the_mean(name: str, metric) -> None:
    hits = _hits([1, 0], [0, 0])
    values = metric(hits=hits, n_relevant=np.array([1, 0]), k=2)
    assert values[0] == pytest.approx(1.0), name
    assert math.isnan(values[1]), name
    assert mean_over_users(values) == pytest.approx(1.0), name


@pytest.mark.parametrize(("name", "metric"), ALL_METRICS)
def test_hits_beyond_k_are_ignored(name: str, metric) -> None:
    hits = _hits([0, 0, 1])
    assert metric(hits=hits, n_relevant=np.array([1]), k=2)[0] == 0.0, name
    assert metric(hits=hits, n_relevant=np.array([1]), k=3)[0] > 0.0, name


def test_ndcg_worked_case() -> None:
    # Relevant at ranks 1 and 3 of K = 3, 2 relevant items in total:
    # DCG  = 1/log2(2) + 1/log2(4) = 1 + 0.5 = 1.5
    # IDCG = 1/log2(2) + 1/log2(3) = 1 + 0.6309297535714575 = 1.6309297535714575
    # NDCG = 1.5 / 1.6309297535714575 = 0.9197207891481876
    value = ndcg_at_k(hits=_hits([1, 0, 1]), n_relevant=np.array([2]), k=3)[0]
    assert value == pytest.approx(0.9197207891481876, abs=1e-12)


def test_ndcg_ideal_is_capped_at_k() -> None:
    # 5 relevant items but K = 2, both slots hit: DCG = IDCG = 1 + 1/log2(3), so NDCG = 1 (not 2-of-5 scaled).
    value = ndcg_at_k(hits=_hits([1, 1, 0]), n_relevant=np.array([5]), k=2)[0]
    assert value == pytest.approx(1.0)


def test_ndcg_single_hit_at_rank_two() -> None:
    # One relevant item, at rank 2: DCG = 1/log2(3) = 0.6309297535714575, IDCG = 1.
    value = ndcg_at_k(hits=_hits([0, 1, 0]), n_relevant=np.array([1]), k=3)[0]
    assert value == pytest.approx(0.6309297535714575, abs=1e-12)


def test_recall_divides_by_all_relevant_items_not_by_k() -> None:
    # 2 hits in the top 3, 4 relevant items in total: 2 / 4 = 0.5 (min(|rel|, K) would give 2 / 3).
    value = recall_at_k(hits=_hits([1, 0, 1]), n_relevant=np.array([4]), k=3)[0]
    assert value == pytest.approx(0.5)


def test_mrr_uses_the_first_hit_only() -> None:
    # First hit at rank 3 → 1/3; the later hit at rank 4 does not matter.
    value = mrr_at_k(hits=_hits([0, 0, 1, 1]), n_relevant=np.array([2]), k=4)[0]
    assert value == pytest.approx(1.0 / 3.0)


def test_hit_rate_is_one_for_any_hit() -> None:
    values = hit_rate_at_k(hits=_hits([0, 0, 1], [0, 0, 0]), n_relevant=np.array([3, 3]), k=3)
    np.testing.assert_array_equal(values, [1.0, 0.0])


@pytest.mark.parametrize("k", [0, 4])
def test_k_out_of_range_is_rejected(k: int) -> None:
    with pytest.raises(ValueError, match="k="):
        recall_at_k(hits=_hits([1, 0, 0]), n_relevant=np.array([1]), k=k)


def test_n_relevant_shape_must_match() -> None:
    with pytest.raises(ValueError, match="n_relevant"):
        ndcg_at_k(hits=_hits([1, 0, 0]), n_relevant=np.array([1, 1]), k=2)


def test_hit_matrix_looks_up_each_ranked_item() -> None:
    relevant = sp.csr_matrix(np.array([[0, 1, 0, 1], [1, 0, 0, 0]], dtype=np.float32))
    ranked = np.array([[3, 0, 1], [2, 1, 0]])
    expected = np.array([[True, False, True], [False, False, True]])
    np.testing.assert_array_equal(hit_matrix(ranked=ranked, relevant=relevant), expected)


def test_mean_over_users_is_nan_when_nobody_counts() -> None:
    assert math.isnan(mean_over_users(np.array([np.nan, np.nan])))
