"""Implicit ALS recovers planted structure, is seeded-deterministic and solves each row exactly."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from explorec.baselines.als import ALS, ALSParams, als_half_step


def test_held_out_positives_rank_above_other_blocks(
    planted_blocks: tuple[sp.csr_matrix, sp.csr_matrix],
) -> None:
    train, held_out = planted_blocks
    # The plant has rank 2 (two user groups × two item blocks), so 2 factors suffice.
    model = ALS(ALSParams(factors=2, alpha=10.0, regularization=0.1, iterations=10, seed=1)).fit(train)
    scores = model.score(np.arange(train.shape[0]))
    in_block = np.where(np.arange(60)[:, None] < 30, np.arange(40) < 20, np.arange(40) >= 20)
    held = held_out.toarray().astype(bool)
    assert np.all(scores[held] > np.where(in_block, -np.inf, scores).max(axis=1))


def test_same_seed_same_factors_other_seed_differs(
    planted_blocks: tuple[sp.csr_matrix, sp.csr_matrix],
) -> None:
    train, _ = planted_blocks
    params = {"factors": 3, "iterations": 3}
    first = ALS(ALSParams(seed=7, **params)).fit(train).score(np.arange(5))
    again = ALS(ALSParams(seed=7, **params)).fit(train).score(np.arange(5))
    other = ALS(ALSParams(seed=8, **params)).fit(train).score(np.arange(5))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_half_step_matches_the_normal_equations_row_by_row() -> None:
    # x_u = (YᵀC_uY + λI)⁻¹ YᵀC_u p_u with c_ui = 1 + α r_ui, written densely for each row.
    rng = np.random.default_rng(3)
    interactions = sp.random(
        6, 9, density=0.4, format="csr", random_state=4, data_rvs=lambda n: rng.integers(1, 4, n)
    )
    fixed = rng.normal(size=(9, 3))
    alpha, regularization = 2.0, 0.5
    solved = als_half_step(interactions, fixed, alpha=alpha, regularization=regularization)
    dense = interactions.toarray()
    for row in range(6):
        confidence = 1.0 + alpha * dense[row]
        preference = (dense[row] > 0).astype(float)
        lhs = fixed.T @ (confidence[:, None] * fixed) + regularization * np.eye(3)
        expected = np.linalg.solve(lhs, fixed.T @ (confidence * preference))
        np.testing.assert_allclose(solved[row], expected, rtol=1e-10, atol=1e-12)


def test_invalid_params_are_rejected() -> None:
    with pytest.raises(ValueError, match="regularization"):
        ALSParams(regularization=0.0)
