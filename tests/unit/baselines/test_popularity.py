"""Popularity ranks every user's items by training count."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from explorec.baselines.base import NotFittedError
from explorec.baselines.popularity import Popularity
from explorec.evaluation.harness import top_k_items


def test_scores_are_distinct_user_counts_for_every_user() -> None:
    # Item counts: item 0 → 1 user, item 1 → 3 users, item 2 → 0, item 3 → 2 (the duplicate entry collapses).
    train = sp.csr_matrix(
        (np.ones(7, dtype=np.float32), ([0, 1, 2, 0, 1, 1, 2], [1, 1, 1, 3, 3, 3, 0])), shape=(3, 4)
    )
    scores = Popularity().fit(train).score(np.array([2, 0]))
    np.testing.assert_array_equal(scores, [[1, 3, 0, 2], [1, 3, 0, 2]])
    np.testing.assert_array_equal(top_k_items(scores, 4), [[1, 3, 0, 2], [1, 3, 0, 2]])


def test_score_before_fit_fails() -> None:
    with pytest.raises(NotFittedError):
        Popularity().score(np.array([0]))


def test_out_of_range_user_fails() -> None:
    model = Popularity().fit(sp.csr_matrix(np.eye(2, dtype=np.float32)))
    with pytest.raises(IndexError):
        model.score(np.array([2]))
