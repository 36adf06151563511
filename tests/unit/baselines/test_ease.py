"""EASE against a 3-item case inverted by hand."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from explorec.baselines.ease import EASE, EASEParams


def _toy() -> sp.csr_matrix:
    return sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 1], [1, 1, 1]], dtype=np.float32))


def test_weights_match_the_hand_computed_closed_form() -> None:
    # XᵀX = [[2,2,1],[2,3,2],[1,2,2]]; with λ = 1, G = [[3,2,1],[2,4,2],[1,2,3]], det G = 16.
    # Cofactors give P = G⁻¹ = [[8,-4,0],[-4,8,-4],[0,-4,8]] / 16 = [[.5,-.25,0],[-.25,.5,-.25],[0,-.25,.5]].
    # B_ij = -P_ij / P_jj off the diagonal, 0 on it: B = [[0,.5,0],[.5,0,.5],[0,.5,0]].
    model = EASE(EASEParams(l2=1.0)).fit(_toy())
    expected = np.array([[0.0, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.0]])
    np.testing.assert_allclose(model.weights, expected, atol=1e-6)


def test_scores_are_history_times_weights() -> None:
    # User 2 holds all three items: x B = [0 + .5 + 0, .5 + 0 + .5, 0 + .5 + 0] = [.5, 1, .5].
    scores = EASE(EASEParams(l2=1.0)).fit(_toy()).score(np.array([2]))
    np.testing.assert_allclose(scores, [[0.5, 1.0, 0.5]], atol=1e-6)


def test_diagonal_is_zero_and_larger_l2_shrinks_weights() -> None:
    small = EASE(EASEParams(l2=1.0)).fit(_toy()).weights
    large = EASE(EASEParams(l2=100.0)).fit(_toy()).weights
    assert np.all(np.diag(large) == 0.0)
    assert np.abs(large).sum() < np.abs(small).sum()


def test_held_out_positive_ranks_first(planted_blocks: tuple[sp.csr_matrix, sp.csr_matrix]) -> None:
    train, held_out = planted_blocks
    scores = EASE(EASEParams(l2=10.0)).fit(train).score(np.arange(train.shape[0]))
    in_block = np.where(np.arange(60)[:, None] < 30, np.arange(40) < 20, np.arange(40) >= 20)
    held = held_out.toarray().astype(bool)
    held_scores = scores[held]
    out_of_block_best = np.where(in_block, -np.inf, scores).max(axis=1)
    assert np.all(held_scores > out_of_block_best)


def test_non_positive_l2_is_rejected() -> None:
    with pytest.raises(ValueError, match="l2"):
        EASEParams(l2=0.0)
