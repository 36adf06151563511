"""Training windows and validation histories built from chronological user sequences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from explorec.config import compose
from explorec.data.interactions import user_sequences
from explorec.evaluation.targets import user_sample
from explorec.models.data import (
    HeldOutExamples,
    TrainingWindows,
    UserHistories,
    genre_multi_hot,
)
from explorec.models.fit import _datamodule, build_two_tower, resolve_model_config
from tests.unit.models.conftest import tiny_dataset

LENGTHS = [0, 1, 2, 4, 5, 6, 7, 13]


def _sequences() -> tuple[pd.DataFrame, int]:
    """Return interactions of users with the given history lengths (shuffled rows) and the user count."""
    rows = [(u, 100 * u + t, 4.0, 1000 - t) for u, n in enumerate(LENGTHS) for t in range(n)]
    frame = pd.DataFrame(rows, columns=["user_idx", "item_idx", "rating", "timestamp"])
    return frame.sample(frac=1.0, random_state=0), len(LENGTHS)


@pytest.mark.parametrize("history_length", [1, 2, 3, 5])
def test_every_train_interaction_is_a_target_once_with_only_earlier_items_as_history(
    history_length: int,
) -> None:
    frame, n_users = _sequences()
    sequences = user_sequences(frame, n_users)
    windows = TrainingWindows(sequences, history_length)
    batch = windows.collate(range(len(windows)))
    seen = []
    for row in range(len(windows)):
        user = int(batch["user_idx"][row])
        history, padding = batch["history"][row].numpy(), batch["padding_mask"][row].numpy()
        order = list(sequences.items[sequences.offsets[user] : sequences.offsets[user + 1]])
        for slot in np.flatnonzero(batch["target_mask"][row].numpy()):
            target = int(batch["targets"][row, slot])
            visible = list(history[:slot][~padding[:slot]])  # output `slot` follows history slots < slot
            assert visible == order[order.index(target) - len(visible) : order.index(target)]
            seen.append((user, target))
    assert sorted(seen) == sorted(zip(frame["user_idx"], frame["item_idx"], strict=True))


def test_sequences_are_in_time_order() -> None:
    frame, n_users = _sequences()
    sequences = user_sequences(frame, n_users)
    user = 7
    items = sequences.items[sequences.offsets[user] : sequences.offsets[user + 1]]
    assert list(items) == sorted(items, reverse=True)  # later items have smaller ids in _sequences


def test_validation_history_is_the_last_n_items_right_aligned() -> None:
    frame, n_users = _sequences()
    sequences = user_sequences(frame, n_users)
    batch = UserHistories(sequences, np.array([0, 2, 7]), history_length=3).collate([0, 1, 2])
    assert batch["padding_mask"][0].all()
    assert batch["padding_mask"][1].tolist() == [True, False, False]
    assert batch["history"][1, 1:].tolist() == list(
        sequences.items[sequences.offsets[2] : sequences.offsets[3]]
    )
    assert batch["history"][2].tolist() == list(
        sequences.items[sequences.offsets[8] - 3 : sequences.offsets[8]]
    )


def test_genre_multi_hot() -> None:
    matrix = genre_multi_hot(pd.Series(["Drama|Comedy", "", "Drama"]))
    assert matrix is not None
    np.testing.assert_array_equal(matrix, [[1, 1], [0, 0], [0, 1]])
    assert genre_multi_hot(pd.Series(["", None])) is None


def test_held_out_examples_split_each_user_into_history_and_unseen_targets() -> None:
    frame, n_users = _sequences()
    sequences = user_sequences(frame, n_users)
    examples = HeldOutExamples(sequences, history_length=20, held_out_fraction=0.25)
    assert sorted(set(examples.users)) == [u for u, n in enumerate(LENGTHS) if n > 0]
    torch.manual_seed(0)
    batch = examples.collate(range(len(examples)))
    for row, user in enumerate(batch["user_idx"].tolist()):
        history = set(batch["history"][row][~batch["padding_mask"][row]].tolist())
        targets = set(batch["held_out"][row][batch["held_out_mask"][row]].tolist())
        owned = set(sequences.items[sequences.offsets[user] : sequences.offsets[user + 1]].tolist())
        assert history | targets == owned
        assert not history & targets
        assert len(targets) == int(np.ceil(0.25 * len(owned)))
    torch.manual_seed(0)
    again = examples.collate(range(len(examples)))
    assert all(torch.equal(batch[key], again[key]) for key in batch)


def test_validation_scores_only_the_evaluation_sample() -> None:
    """With evaluation.max_users set, in-training validation scores the sample the val evaluation scores."""
    dataset = tiny_dataset()
    cfg = compose(["encoder=none", "evaluation.max_users=5", "evaluation.seed=3"])
    model_cfg = resolve_model_config(cfg.model, cfg.split.name)
    model = build_two_tower(dataset, None, model_cfg)
    sampled = _datamodule(dataset, cfg, model_cfg, model)
    expected = user_sample(cfg.evaluation).users(dataset.matrix("valid"))
    assert expected is not None and len(expected) == 5
    assert sampled.validation_users.tolist() == expected.tolist()
    every = _datamodule(dataset, compose(["encoder=none"]), model_cfg, model)
    assert every.validation_users.tolist() == list(range(dataset.n_users))
    assert len(sampled.val_dataloader().dataset) == 5
