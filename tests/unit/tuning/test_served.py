"""Served-slate accuracy and diversity, checked on cases worked by hand."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from explorec.evaluation.scoring import ScoreMatrix
from explorec.evaluation.slates import slate_metrics
from explorec.policies.spec import PolicySpec
from explorec.tuning.served import serve_slates, served_metrics, served_ndcg

SCORES = np.array([[0.9, 0.8, 0.7, 0.1, 0.0], [0.0, 0.1, 0.2, 0.8, 0.9]])
EXCLUDE = sp.csr_matrix(np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0]]))
TARGETS = sp.csr_matrix(np.array([[0, 0, 1, 0, 0], [0, 0, 0, 0, 1]]))


SCORER = ScoreMatrix(SCORES)


def test_greedy_slates_skip_excluded_items_and_score_by_hand() -> None:
    slates = serve_slates(
        SCORER, users=np.array([0, 1]), exclude=EXCLUDE, policy=PolicySpec("greedy", 0.0).build(), k=2, seed=0
    )
    assert slates.items.tolist() == [[1, 2], [4, 3]]
    assert slates.deviation_rate == 0.0
    # user 0: hit at rank 2 → (1/log2 3) / 1; user 1: hit at rank 1 → 1
    assert served_ndcg(slates, TARGETS, k=2) == pytest.approx((1 / np.log2(3) + 1.0) / 2)


def test_full_exploration_is_seeded_and_deviates() -> None:
    policy = PolicySpec("epsilon_greedy", 1.0).build()
    first = serve_slates(SCORER, users=np.array([0, 1]), exclude=EXCLUDE, policy=policy, k=3, seed=7)
    again = serve_slates(SCORER, users=np.array([0, 1]), exclude=EXCLUDE, policy=policy, k=3, seed=7)
    assert np.array_equal(first.items, again.items)
    assert 0 not in first.items[0]


def test_diversity_objectives() -> None:
    slates = serve_slates(
        SCORER, users=np.array([0, 1]), exclude=EXCLUDE, policy=PolicySpec("greedy", 0.0).build(), k=2, seed=0
    )
    assert "intra_list_diversity" not in slate_metrics(slates.items, n_items=5)
    metrics = slate_metrics(slates.items, n_items=5, diversity_vectors=np.eye(5))
    assert metrics["catalog_coverage"] == pytest.approx(4 / 5)
    assert metrics["intra_list_diversity"] == pytest.approx(1.0)


def test_served_metrics_serve_only_users_with_targets() -> None:
    targets = sp.csr_matrix(np.array([[0, 0, 1, 0, 0], [0, 0, 0, 0, 0]]))
    metrics = served_metrics(
        SCORER,
        targets=targets,
        exclude=EXCLUDE,
        policy=PolicySpec("greedy", 0.0).build(),
        k=2,
        seed=0,
        diversity_vectors=np.eye(5),
    )
    assert metrics["n_users"] == 1
    assert metrics["ndcg@2"] == pytest.approx(1 / np.log2(3))
    assert metrics["ild"] == pytest.approx(1.0)
    assert metrics["coverage"] == pytest.approx(2 / 5)
