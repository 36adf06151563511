"""Beyond-accuracy metrics against limits and cases worked by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import numpy as np
import pytest

from explorec.evaluation import beyond_accuracy
from explorec.evaluation.beyond_accuracy import (
    catalog_coverage,
    distributional_coverage,
    exposure_counts,
    exposure_gini,
    hidden_interest_recall,
    intra_list_diversity,
    new_cluster_discovery,
    new_cluster_discovery_share,
    novelty,
    serendipity,
)

# Recommendations over 4 items: exposures [2, 1, 1, 0].
MID_CASE = [np.array([0, 1]), np.array([0, 2])]
# Unit vectors: 0 = e1, 1 = e2, 2 = (e1 + e2)/√2, 3 = 2·e1 (same direction as 0).
VECTORS = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
ROOT_HALF = np.sqrt(0.5)


def test_exposure_counts_and_bounds() -> None:
    np.testing.assert_array_equal(exposure_counts(recommended_items=MID_CASE, n_items=4), [2, 1, 1, 0])
    with pytest.raises(ValueError, match="item ids must lie in"):
        exposure_counts(recommended_items=np.array([4]), n_items=4)


def test_catalog_coverage() -> None:
    assert catalog_coverage(recommended_items=MID_CASE, n_items=4) == 0.75  # 3 of 4 items
    assert catalog_coverage(recommended_items=np.arange(4), n_items=4) == 1.0
    assert catalog_coverage(recommended_items=[], n_items=4) == 0.0


def test_distributional_coverage() -> None:
    # p = (1/2, 1/4, 1/4): H = 0.5·1 + 2·0.25·2 = 1.5 bits; log2 4 = 2 → 0.75.
    assert distributional_coverage(recommended_items=MID_CASE, n_items=4) == pytest.approx(0.75)
    assert distributional_coverage(recommended_items=np.arange(4), n_items=4) == pytest.approx(1.0)
    assert distributional_coverage(recommended_items=np.array([2, 2, 2]), n_items=4) == 0.0
    assert np.isnan(distributional_coverage(recommended_items=[], n_items=4))


def test_exposure_gini() -> None:
    # Sorted [0, 1, 1, 2], total 4, n = 4: Σ(2i − 5)c = −3·0 − 1·1 + 1·1 + 3·2 = 6 → 6 / (3·4) = 0.5.
    assert exposure_gini(recommended_items=MID_CASE, n_items=4) == pytest.approx(0.5)
    # n = 2, sorted [1, 3]: (−1·1 + 1·3) / (1·4) = 0.5.
    assert exposure_gini(recommended_items=np.array([0, 1, 1, 1]), n_items=2) == pytest.approx(0.5)
    assert exposure_gini(recommended_items=np.array([0, 1, 2, 3, 3, 2, 1, 0]), n_items=4) == 0.0
    assert exposure_gini(recommended_items=np.array([3, 3, 3]), n_items=4) == pytest.approx(1.0)
    assert np.isnan(exposure_gini(recommended_items=[], n_items=4))


def test_novelty() -> None:
    popularity = np.array([10, 5, 1, 0])
    # N = 10: −log2(10/10) = 0, −log2(5/10) = 1, −log2(1/10) = 3.3219, unseen counts as 1 → 3.3219.
    expected = (0 + 1 + 2 * np.log2(10)) / 4  # 1.91096
    assert novelty(recommended_items=np.arange(4), item_popularity=popularity, n_users=10) == pytest.approx(
        expected
    )
    assert novelty(recommended_items=np.array([0, 0]), item_popularity=popularity, n_users=10) == 0.0
    with pytest.raises(ValueError, match="exceeds n_users"):
        novelty(recommended_items=np.array([0]), item_popularity=popularity, n_users=5)


def test_intra_list_diversity() -> None:
    # [0, 1]: cos 0 → 1. [0, 3]: same direction → 0. [0, 1, 2]: cosines 0, √½, √½ → mean 0.4714 → 0.5286.
    assert intra_list_diversity(
        recommendation_lists=[np.array([0, 1])], item_vectors=VECTORS
    ) == pytest.approx(1.0)
    assert intra_list_diversity(
        recommendation_lists=[np.array([0, 3])], item_vectors=VECTORS
    ) == pytest.approx(0.0)
    three = intra_list_diversity(recommendation_lists=[np.array([0, 1, 2])], item_vectors=VECTORS)
    assert three == pytest.approx(1 - 2 * ROOT_HALF / 3)
    # Lists are averaged; a single-item list is skipped: (1 + 0) / 2.
    lists = [np.array([0, 1]), np.array([0, 3]), np.array([2])]
    assert intra_list_diversity(recommendation_lists=lists, item_vectors=VECTORS) == pytest.approx(0.5)
    assert np.isnan(intra_list_diversity(recommendation_lists=[np.array([1])], item_vectors=VECTORS))
    # Mixed lengths: the mean is over lists, not over groups of one length.
    mixed = [np.array([0, 1]), np.array([0, 3]), np.array([0, 1, 2])]
    assert intra_list_diversity(recommendation_lists=mixed, item_vectors=VECTORS) == pytest.approx(
        (1.0 + 0.0 + 1 - 2 * ROOT_HALF / 3) / 3
    )


def test_intra_list_diversity_equals_the_pairwise_definition_on_random_lists() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 8))
    lists = [rng.choice(50, size=int(rng.integers(1, 8)), replace=False) for _ in range(40)]
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = np.mean(
        [
            1 - np.mean([unit[a] @ unit[b] for i, a in enumerate(items) for b in items[i + 1 :]])
            for items in lists
            if items.size >= 2
        ]
    )
    assert intra_list_diversity(recommendation_lists=lists, item_vectors=vectors) == pytest.approx(expected)


def test_intra_list_diversity_is_the_same_measured_in_small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(30, 5))
    lists = [rng.choice(30, size=int(rng.integers(2, 6)), replace=False) for _ in range(25)]
    whole = intra_list_diversity(recommendation_lists=lists, item_vectors=vectors)
    monkeypatch.setattr(beyond_accuracy, "ILD_BLOCK_LISTS", 2)
    assert intra_list_diversity(recommendation_lists=lists, item_vectors=vectors) == pytest.approx(whole)


def test_serendipity() -> None:
    history, relevant = [np.array([0])], [np.array([1, 2])]
    # Recs [1, 2, 0] vs history e1: unexpectedness 1, 1 − √½ = 0.2929, 0; relevance 1, 1, 0 → 1.2929 / 3.
    mid = serendipity(
        recommendation_lists=[np.array([1, 2, 0])],
        histories=history,
        relevant_items=relevant,
        item_vectors=VECTORS,
    )
    assert mid == pytest.approx((1 + 1 - ROOT_HALF) / 3)
    perfect = serendipity(
        recommendation_lists=[np.array([1])], histories=history, relevant_items=relevant, item_vectors=VECTORS
    )
    assert perfect == pytest.approx(1.0)
    none_relevant = serendipity(
        recommendation_lists=[np.array([1, 2])],
        histories=history,
        relevant_items=[np.array([3])],
        item_vectors=VECTORS,
    )
    assert none_relevant == 0.0
    # Two users averaged: the first as above (1.0), the second has an empty history (unexpectedness 1) and
    # one relevant item of two → 0.5; mean 0.75.
    two_users = serendipity(
        recommendation_lists=[np.array([1]), np.array([0, 3])],
        histories=[np.array([0]), np.array([], dtype=np.int64)],
        relevant_items=[np.array([1]), np.array([3])],
        item_vectors=VECTORS,
    )
    assert two_users == pytest.approx(0.75)


def test_new_cluster_discovery() -> None:
    clusters = np.array([0, 0, 1, 1, 2, 2])
    # User A: history cluster {0}, reaches clusters {0, 1, 2} → 2 new of 2 unexplored.
    # User B: history clusters {1, 2}, reaches cluster {1} → 0 new of 1 unexplored.
    # User C: history covers all clusters → 0 new; skipped by the share (nothing left to discover).
    reached = [np.array([1, 2, 4]), np.array([3]), np.array([0])]
    histories = [np.array([0]), np.array([2, 4]), np.array([0, 2, 4])]
    count = new_cluster_discovery(reached_items=reached, histories=histories, item_clusters=clusters)
    assert count == pytest.approx(2 / 3)  # (2 + 0 + 0) / 3
    share = new_cluster_discovery_share(reached_items=reached, histories=histories, item_clusters=clusters)
    assert share == pytest.approx(0.5)  # (2/2 + 0/1) / 2
    everything = new_cluster_discovery_share(
        reached_items=[np.arange(6)], histories=[np.array([0])], item_clusters=clusters
    )
    assert everything == 1.0
    nothing = new_cluster_discovery(
        reached_items=[np.array([1])], histories=[np.array([0])], item_clusters=clusters
    )
    assert nothing == 0.0


def test_hidden_interest_recall() -> None:
    # A: 2 of 3 hidden served; B: 0 of 1; C: no hidden positives → skipped. Mean (2/3 + 0) / 2 = 1/3.
    served = [np.array([2, 3, 9]), np.array([], dtype=np.int64), np.array([4])]
    hidden = [np.array([1, 2, 3]), np.array([5]), np.array([], dtype=np.int64)]
    assert hidden_interest_recall(served_items=served, hidden_positives=hidden) == pytest.approx(1 / 3)
    assert hidden_interest_recall(served_items=[np.array([5, 1])], hidden_positives=[np.array([1, 5])]) == 1.0
    assert hidden_interest_recall(served_items=[np.array([7])], hidden_positives=[np.array([1, 5])]) == 0.0


def test_discovery_and_hidden_recall_equal_their_per_user_definitions_on_random_lists() -> None:
    rng = np.random.default_rng(2)
    clusters = rng.integers(0, 6, size=40)
    lists = [rng.choice(40, size=int(rng.integers(0, 9)), replace=False) for _ in range(30)]
    histories = [rng.choice(40, size=int(rng.integers(0, 9))) for _ in range(30)]  # repeats allowed
    new = [np.setdiff1d(clusters[r], clusters[h]).size for r, h in zip(lists, histories, strict=True)]
    unexplored = [6 - np.unique(clusters[h]).size for h in histories]
    count = new_cluster_discovery(reached_items=lists, histories=histories, item_clusters=clusters)
    assert count == np.mean(new)
    share = new_cluster_discovery_share(reached_items=lists, histories=histories, item_clusters=clusters)
    assert share == np.mean([n / u for n, u in zip(new, unexplored, strict=True) if u])
    recall = [np.isin(np.unique(h), r).mean() for r, h in zip(lists, histories, strict=True) if h.size]
    assert hidden_interest_recall(served_items=lists, hidden_positives=histories) == np.mean(recall)
