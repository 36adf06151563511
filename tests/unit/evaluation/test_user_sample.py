"""evaluation.max_users: a seeded sample of users stands in for the whole, and the results say so."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import scipy.sparse as sp

from explorec.config import compose
from explorec.errors import ConfigError
from explorec.evaluation.harness import full_ranking_evaluate
from explorec.evaluation.targets import (
    SAMPLED_FROM,
    EvaluationTarget,
    UserSample,
    evaluate_per_user,
    sample_note,
)

N_USERS, N_ITEMS = 40, 30


class FixedScores:
    """A scorer that returns the same seeded scores whatever history it is asked to score from."""

    def __init__(self) -> None:
        self.scores = np.random.default_rng(3).normal(size=(N_USERS, N_ITEMS)).astype(np.float32)

    def score(self, users: np.ndarray, history_splits: Sequence[str]) -> np.ndarray:
        """Return the stored rows of `users`."""
        return self.scores[users]


def targets_of(seed: int, users: np.ndarray) -> sp.csr_matrix:
    """Return a users × items matrix with two random target items for each of `users`, none for others."""
    rng = np.random.default_rng(seed)
    rows = np.repeat(users, 2)
    columns = np.concatenate([rng.choice(N_ITEMS, size=2, replace=False) for _ in users])
    return sp.csr_matrix((np.ones(rows.size), (rows, columns)), shape=(N_USERS, N_ITEMS))


@pytest.fixture
def evaluations() -> list[EvaluationTarget]:
    """Validation targets for users 0..34 and test targets for users 5..39; nothing is masked."""
    nothing = sp.csr_matrix((N_USERS, N_ITEMS))
    return [
        EvaluationTarget("val", targets_of(0, np.arange(35)), nothing, ("train",)),
        EvaluationTarget("test", targets_of(1, np.arange(5, 40)), nothing, ("train", "valid")),
    ]


def test_a_sample_draws_that_many_users_with_targets_the_same_way_each_time(
    evaluations: list[EvaluationTarget],
) -> None:
    targets = evaluations[1].targets
    chosen = UserSample(max_users=10, seed=7).users(targets)
    assert chosen is not None and chosen.size == 10 and np.all(np.diff(chosen) > 0)
    assert chosen.min() >= 5  # only users with a target
    assert np.array_equal(chosen, UserSample(max_users=10, seed=7).users(targets))
    assert not np.array_equal(chosen, UserSample(max_users=10, seed=8).users(targets))
    assert UserSample(max_users=35, seed=7).users(targets) is None  # as many as there are: everyone
    assert UserSample().users(targets) is None


def test_sampled_metrics_are_the_full_metrics_of_the_sampled_users_and_say_so(
    evaluations: list[EvaluationTarget],
) -> None:
    scorer, sample = FixedScores(), UserSample(max_users=12, seed=0)
    results, per_user = evaluate_per_user(scorer, None, targets=evaluations, sample=sample)  # type: ignore[arg-type]
    for target in evaluations:
        users = sample.users(target.targets)
        alone = full_ranking_evaluate(
            scorer, history_splits=target.history, targets=target.targets, exclude=target.exclude, users=users
        )
        assert results[target.name]["n_users"] == 12 and results[target.name][SAMPLED_FROM] == 35
        assert results[target.name]["ndcg@10"] == pytest.approx(alone["ndcg@10"])
        assert np.array_equal(per_user[target.name].users, users)
    assert sample_note(results, sample) == (
        "A seeded sample of users stands in for the whole: val 12 of 35 users, test 12 of 35 users "
        "(evaluation.max_users=12, evaluation.seed=0)."
    )


def test_without_a_limit_every_user_is_evaluated_and_nothing_is_said(
    evaluations: list[EvaluationTarget],
) -> None:
    results, _ = evaluate_per_user(FixedScores(), None, targets=evaluations)  # type: ignore[arg-type]
    assert results["val"]["n_users"] == 35 and SAMPLED_FROM not in results["val"]
    assert sample_note(results, UserSample()) is None


def test_max_users_defaults_to_every_user_and_must_be_positive() -> None:
    assert compose([]).evaluation.max_users is None
    assert compose(["evaluation.max_users=500"]).evaluation.max_users == 500
    with pytest.raises(ConfigError, match=r"evaluation\.max_users=0 must be >= 1"):
        compose(["evaluation.max_users=0"])
