"""The factory builds every baseline by name and rejects unknown names and parameters."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from explorec.baselines.base import NotFittedError, Recommender
from explorec.baselines.ease import EASE
from explorec.baselines.factory import BASELINES, build_baseline
from explorec.evaluation.harness import full_ranking_evaluate
from explorec.evaluation.scoring import ScoreMatrix

TINY_PARAMS: dict[str, dict[str, float | int]] = {"als": {"factors": 2}, "ease": {"l2": 10.0}}
"""Overrides for the 60 × 40 rank-2 plant (the defaults are sized for MovieLens)."""


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_every_baseline_fits_and_scores_through_the_harness(
    name: str, planted_blocks: tuple[sp.csr_matrix, sp.csr_matrix]
) -> None:
    train, held_out = planted_blocks
    model = build_baseline(name, **TINY_PARAMS.get(name, {}))
    assert isinstance(model, Recommender)
    with pytest.raises(NotFittedError):
        model.score(np.array([0]))
    model.fit(train)
    scores = model.score(np.array([3, 1]))
    assert scores.shape == (2, train.shape[1])
    result = full_ranking_evaluate(
        ScoreMatrix(model.score(np.arange(train.shape[0]))), targets=held_out, exclude=train, ks=(10,)
    )
    assert result["n_users"] == 60.0
    # 9 unseen in-block items among 29 unseen: all but popularity rank the held-out one in the top 10.
    if name != "popularity":
        assert result["hit@10"] == 1.0


def test_parameters_are_passed_through() -> None:
    model = build_baseline("ease", l2=3.0)
    assert isinstance(model, EASE)
    assert model.params.l2 == 3.0


def test_unknown_name_and_parameter_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown baseline"):
        build_baseline("slim")
    with pytest.raises(ValueError, match="unknown parameters"):
        build_baseline("ease", lambda_=3.0)
