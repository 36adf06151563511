"""ItemKNN cosine similarity and neighbour pruning on a toy matrix."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from explorec.baselines.item_knn import ItemKNN, ItemKNNParams


def _toy() -> sp.csr_matrix:
    # Item user counts: 2, 2, 2, 1. Co-counts: (0,1) 2, (0,2) 1, (1,2) 1, (2,3) 1, others 0.
    return sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 1, 1]], dtype=np.float32))


def test_full_cosine_similarity() -> None:
    # cos = co / (sqrt(n_i) sqrt(n_j)): (0,1) 2/2 = 1, (0,2) = (1,2) = 1/2, (2,3) 1/sqrt(2); diagonal 0.
    r = 1.0 / math.sqrt(2.0)
    expected = np.array([[0, 1, 0.5, 0], [1, 0, 0.5, 0], [0.5, 0.5, 0, r], [0, 0, r, 0]])
    similarity = ItemKNN(ItemKNNParams(neighbours=10)).fit(_toy()).similarity.toarray()
    np.testing.assert_allclose(similarity, expected, atol=1e-6)


def test_shrinkage_enters_the_denominator() -> None:
    # (0,1): 2 / (2 + 1) = 2/3; (2,3): 1 / (sqrt(2) + 1).
    similarity = ItemKNN(ItemKNNParams(neighbours=10, shrinkage=1.0)).fit(_toy()).similarity.toarray()
    assert similarity[0, 1] == pytest.approx(2.0 / 3.0)
    assert similarity[2, 3] == pytest.approx(1.0 / (math.sqrt(2.0) + 1.0))


def test_each_item_keeps_only_its_top_neighbours() -> None:
    # One neighbour per column: 0 ← 1, 1 ← 0, 2 ← 3 (0.707 beats 0.5), 3 ← 2.
    r = 1.0 / math.sqrt(2.0)
    expected = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, r], [0, 0, r, 0]])
    similarity = ItemKNN(ItemKNNParams(neighbours=1)).fit(_toy()).similarity.toarray()
    np.testing.assert_allclose(similarity, expected, atol=1e-6)


def test_scores_sum_similarities_to_the_users_items() -> None:
    # User 0 holds items 0 and 1: scores = S[0] + S[1] = [1, 1, 1, 0] with the full similarity.
    scores = ItemKNN(ItemKNNParams(neighbours=10)).fit(_toy()).score(np.array([0]))
    np.testing.assert_allclose(scores, [[1.0, 1.0, 1.0, 0.0]], atol=1e-6)


def test_held_out_positive_beats_other_blocks(planted_blocks: tuple[sp.csr_matrix, sp.csr_matrix]) -> None:
    train, held_out = planted_blocks
    scores = ItemKNN(ItemKNNParams(neighbours=10)).fit(train).score(np.arange(train.shape[0]))
    in_block = np.where(np.arange(60)[:, None] < 30, np.arange(40) < 20, np.arange(40) >= 20)
    held = held_out.toarray().astype(bool)
    assert np.all(scores[held] > np.where(in_block, -np.inf, scores).max(axis=1))


@pytest.mark.parametrize(("neighbours", "shrinkage"), [(0, 0.0), (5, -1.0)])
def test_invalid_params_are_rejected(neighbours: int, shrinkage: float) -> None:
    with pytest.raises(ValueError, match=r"neighbours|shrinkage"):
        ItemKNNParams(neighbours=neighbours, shrinkage=shrinkage)
