"""Session replay on the tiny catalogue: who is replayed, what is found, and the paired comparison."""

from __future__ import annotations

import numpy as np
import pytest

from explorec.data.processed import ProcessedDataset
from explorec.policies.spec import PolicySpec
from explorec.serving.bundle import ScoreCalibration
from explorec.serving.replay import (
    CONTROL,
    evaluation_sessions,
    policy_grid,
    policy_label,
    replay_comparison,
    replay_sessions,
)

from .conftest import tiny_bundle


def test_sessions_read_history_and_held_out_items_of_the_evaluation(dataset: ProcessedDataset) -> None:
    """valid: history = train, held out = validation; test: history = train + validation, held out = test."""
    on_valid, on_test = evaluation_sessions(dataset, "valid"), evaluation_sessions(dataset, "test")
    train, valid, test = (dataset.matrix(name) for name in ("train", "valid", "test"))
    for row, user in enumerate(on_valid.users):
        assert set(on_valid.histories[row]) == set(train[user].indices)
        assert set(on_valid.held_out[row]) == set(valid[user].indices)
    for row, user in enumerate(on_test.users):
        assert set(on_test.histories[row]) == set(train[user].indices) | set(valid[user].indices)
        assert set(on_test.held_out[row]) == set(test[user].indices)
    with pytest.raises(ValueError, match="evaluation must be one of"):
        evaluation_sessions(dataset, "train")


def test_a_slate_as_large_as_what_is_left_finds_every_held_out_item_at_once(
    dataset: ProcessedDataset,
) -> None:
    """With k = every item outside the history, greedy finds all held-out items on the first visit."""
    bundle = tiny_bundle(dataset)
    sessions = evaluation_sessions(dataset, "valid")
    one_user = type(sessions)(sessions.users[:1], sessions.histories[:1], sessions.held_out[:1])
    k = dataset.n_items - sessions.histories[0].size
    found = replay_sessions(bundle, one_user, CONTROL, visits=1, k=k, seed=0)
    assert found.tolist() == [[sessions.held_out[0].size]]


def test_items_are_found_at_most_once_per_session(dataset: ProcessedDataset) -> None:
    """Shown items are fed back and excluded, so a session never finds more than the held-out items."""
    bundle = tiny_bundle(dataset, policy=PolicySpec("linucb", 1.0, {}))
    bundle.score_calibration = ScoreCalibration(3.0, -2.0)
    sessions = evaluation_sessions(dataset, "test")
    found = replay_sessions(bundle, sessions, bundle.policy, visits=6, k=5, seed=0)
    assert found.shape == (sessions.users.size, 6)
    totals = found.sum(axis=1)
    assert (totals <= np.array([held.size for held in sessions.held_out])).all()
    assert totals.sum() > 0


def test_comparison_pairs_users_and_greedy_against_itself_differs_by_nothing(
    dataset: ProcessedDataset,
) -> None:
    """Greedy as a treatment equals the control exactly; rows carry found items, intervals and Holm p."""
    bundle = tiny_bundle(dataset, policy=PolicySpec("linucb", 1.0, {}))
    bundle.score_calibration = ScoreCalibration(3.0, -2.0)
    policies = [CONTROL, *policy_grid(bundle.policy, [0.0, 1.0], [1.0, 100.0])]
    summary = replay_comparison(bundle, dataset, policies, evaluation="test", visits=3, k=4)
    rows = summary["rows"]
    assert [row["policy"] for row in rows[:2]] == ["greedy (control)", "greedy@0"]
    assert rows[1]["difference"] == rows[1]["ci_low"] == rows[1]["ci_high"] == 0.0
    assert rows[1]["found"] == rows[0]["found"]
    assert len(rows) == 2 + 4 and all(0.0 <= row["p_holm"] <= 1.0 for row in rows[1:])
    assert "| linucb@1 (feedback weight 100) |" in summary["markdown"]
    assert summary["n_users"] == evaluation_sessions(dataset, "test").users.size


def test_policy_grid_adds_feedback_weights_to_linear_policies_only() -> None:
    """Linear policies get rate × precision configurations; others only their rates."""
    linear = policy_grid(PolicySpec("thompson", 0.5, {"n_candidates": 9}), [0.0, 1.0], [1.0, 10.0])
    assert [(p.exploration_rate, p.params) for p in linear] == [
        (0.0, {"n_candidates": 9, "feedback_weight": 1.0}),
        (0.0, {"n_candidates": 9, "feedback_weight": 10.0}),
        (1.0, {"n_candidates": 9, "feedback_weight": 1.0}),
        (1.0, {"n_candidates": 9, "feedback_weight": 10.0}),
    ]
    other = policy_grid(PolicySpec("epsilon_greedy", 0.1, {}), [0.2], [1.0, 10.0])
    assert [(p.name, p.exploration_rate, p.params) for p in other] == [("epsilon_greedy", 0.2, {})]
    assert policy_label(linear[1]) == "thompson@0 (feedback weight 10)"


def test_a_model_with_user_ids_is_refused(dataset: ProcessedDataset) -> None:
    """User-ID towers would serve every replayed user as cold start: a clear error instead."""
    bundle = tiny_bundle(dataset)
    bundle.tower_config = {**bundle.tower_config, "n_users": dataset.n_users}
    with pytest.raises(ValueError, match="without user-ID embeddings"):
        replay_sessions(bundle, evaluation_sessions(dataset, "valid"), CONTROL, visits=1, k=2, seed=0)
