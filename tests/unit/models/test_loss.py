"""The sampled softmax with logQ correction and the full-catalogue softmax, checked against hand values."""

from __future__ import annotations

import math

import pytest
import torch

from explorec.models.losses import full_softmax_loss, in_batch_log_q, sampled_softmax_loss
from explorec.models.two_tower import history_counts

USERS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
ITEMS = torch.tensor([[0.6, 0.8], [1.0, 0.0]])  # item 0 (popular), item 1 (rare)
ITEM_IDX = torch.tensor([0, 1])
LOG_Q = torch.log(torch.tensor([0.5, 0.1]))


def _row_loss(positive: float, *negatives: float) -> float:
    """Return -log softmax of the positive logit against the negative logits."""
    return -positive + math.log(math.exp(positive) + sum(math.exp(n) for n in negatives))


def _loss(users: torch.Tensor, targets: torch.Tensor, **kwargs: object) -> float:
    """Return the loss of `users` for `targets` against the two items."""
    return sampled_softmax_loss(users, targets, ITEMS, ITEM_IDX, temperature=1.0, **kwargs).item()  # type: ignore[arg-type]


def test_plain_in_batch_softmax_matches_hand_computation() -> None:
    # logits: user 0 → [0.6, 1.0] (positive item 0: 0.6); user 1 → [0.8, 0.0] (positive item 1: 0.0)
    expected = (_row_loss(0.6, 1.0) + _row_loss(0.0, 0.8)) / 2
    assert _loss(USERS, ITEM_IDX) == pytest.approx(expected, rel=1e-6)


def test_logq_correction_matches_hand_computation() -> None:
    # subtracting log q adds log 2 to every logit of item 0 and log 10 to every logit of item 1
    a, b = math.log(2.0), math.log(10.0)
    expected = (_row_loss(0.6 + a, 1.0 + b) + _row_loss(0.0 + b, 0.8 + a)) / 2
    assert _loss(USERS, ITEM_IDX, candidate_log_q=LOG_Q) == pytest.approx(expected, rel=1e-6)


def test_logq_lowers_the_popular_item_relative_to_the_rare_one() -> None:
    user = USERS[:1]
    popular_target, rare_target = torch.tensor([0]), torch.tensor([1])
    assert _loss(user, popular_target, candidate_log_q=LOG_Q) > _loss(user, popular_target)
    assert _loss(user, rare_target, candidate_log_q=LOG_Q) < _loss(user, rare_target)


def test_temperature_divides_the_logits() -> None:
    expected = (_row_loss(6.0, 10.0) + _row_loss(0.0, 8.0)) / 2
    loss = sampled_softmax_loss(USERS, ITEM_IDX, ITEMS, ITEM_IDX, temperature=0.1)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_a_copy_of_the_target_among_the_candidates_is_not_a_negative() -> None:
    candidates = torch.tensor([[0.6, 0.8], [0.0, 1.0], [0.6, 0.8]])
    loss = sampled_softmax_loss(
        USERS[:1], torch.tensor([0]), candidates, torch.tensor([0, 7, 0]), temperature=1.0
    )
    # positive item 0 (0.6) against item 7 (0.0); the second copy of item 0 is masked
    assert loss.item() == pytest.approx(_row_loss(0.6, 0.0), rel=1e-6)


def test_a_target_missing_from_the_candidates_is_an_error() -> None:
    with pytest.raises(ValueError, match="among the candidates"):
        sampled_softmax_loss(USERS, torch.tensor([0, 5]), ITEMS, ITEM_IDX, temperature=1.0)


def test_in_batch_log_q_is_log_n_p_for_rare_items_and_zero_for_certain_ones() -> None:
    log_p = torch.log(torch.tensor([1e-6, 0.5]))
    log_q = in_batch_log_q(log_p, 1000)
    assert log_q[0].item() == pytest.approx(math.log(1000 * 1e-6), abs=1e-3)
    assert log_q[1].item() == pytest.approx(0.0, abs=1e-6)


# Full-catalogue softmax: two users, three items (unit vectors), hand-computed log-likelihoods.
CATALOGUE = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])


def _log_softmax(logits: list[float], index: int) -> float:
    """Return log softmax(logits)[index]."""
    return logits[index] - math.log(sum(math.exp(value) for value in logits))


def test_full_softmax_matches_hand_computation() -> None:
    # user 0 logits [1, 0, 0.6], targets {0, 2}; user 1 logits [0, 1, 0.8], target {1} (second slot padding)
    targets = torch.tensor([[0, 2], [1, 0]])
    mask = torch.tensor([[True, True], [True, False]])
    loss = full_softmax_loss(USERS, CATALOGUE, targets, mask, temperature=1.0)
    user_0, user_1 = [1.0, 0.0, 0.6], [0.0, 1.0, 0.8]
    expected = -(_log_softmax(user_0, 0) + _log_softmax(user_0, 2) + _log_softmax(user_1, 1)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_full_softmax_excluded_items_get_no_mass_and_temperature_divides() -> None:
    # user 0 excludes item 1 (its input): softmax over items 0 and 2 only, logits / 0.5
    exclude = torch.tensor([[False, True, False]])
    loss = full_softmax_loss(USERS[:1], CATALOGUE, torch.tensor([[2]]), temperature=0.5, exclude=exclude)
    expected = -_log_softmax([2.0, 1.2], 1)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    with_input = full_softmax_loss(USERS[:1], CATALOGUE, torch.tensor([[2]]), temperature=0.5)
    assert with_input.item() > loss.item()


def test_full_softmax_refuses_an_excluded_target_and_no_targets() -> None:
    exclude = torch.tensor([[False, False, True]])
    with pytest.raises(ValueError, match="excluded"):
        full_softmax_loss(USERS[:1], CATALOGUE, torch.tensor([[2]]), temperature=1.0, exclude=exclude)
    with pytest.raises(ValueError, match="at least one target"):
        full_softmax_loss(USERS[:1], CATALOGUE, torch.tensor([[2]]), torch.tensor([[False]]), temperature=1.0)


def test_history_counts_ignore_padding() -> None:
    history = torch.tensor([[0, 2, 2], [1, 0, 0]])
    padding = torch.tensor([[True, False, False], [False, True, True]])
    expected = torch.tensor([[0.0, 0.0, 2.0], [0.0, 1.0, 0.0]])
    torch.testing.assert_close(history_counts(history, padding, 3), expected)
