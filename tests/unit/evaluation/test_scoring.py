"""The one `Scorer` interface: fixed score matrices, baselines per history and the evaluation targets."""

from __future__ import annotations

import numpy as np
import pytest

from explorec.baselines.factory import build_baseline
from explorec.baselines.scorer import BaselineScorer
from explorec.evaluation.scoring import TRAIN_HISTORY, ScoreMatrix, Scorer
from explorec.evaluation.targets import evaluate
from tests.unit.models.conftest import tiny_dataset


def test_a_score_matrix_returns_the_rows_of_its_history_only() -> None:
    scorer = ScoreMatrix(np.arange(6.0).reshape(3, 2))
    assert isinstance(scorer, Scorer)
    np.testing.assert_array_equal(scorer.score(np.array([2, 0]), TRAIN_HISTORY), [[4.0, 5.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="history"):
        scorer.score(np.array([0]), ("train", "valid"))


def test_a_baseline_scorer_fits_once_per_history_on_that_history() -> None:
    dataset = tiny_dataset()
    scorer = BaselineScorer("ease", {"l2": 10.0}, dataset)
    assert isinstance(scorer, Scorer)
    users = np.arange(dataset.n_users)
    for history in (("train",), ("train", "valid")):
        expected = build_baseline("ease", l2=10.0).fit(dataset.matrix(*history)).score(users)
        np.testing.assert_array_equal(scorer.score(users, history), expected.astype(np.float32))
    assert set(scorer._models) == {("train",), ("train", "valid")}
    assert evaluate(scorer, dataset)["test"]["n_users"] == dataset.n_users
