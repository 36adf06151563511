"""Splits: no leakage, leave_last_out holds out the latest, seeds reproduce, cold items never train."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from explorec.config import SplitConfig
from explorec.data.splits import (
    coat_random,
    cold_items,
    leave_last_out,
    make_split,
    random_ratio,
    temporal_ratio,
)


def _interactions(n_users: int = 30, per_user: int = 12, n_items: int = 40, seed: int = 0) -> pd.DataFrame:
    """Return a random implicit log with distinct items per user and random timestamps."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        items = rng.choice(n_items, size=per_user, replace=False)
        times = rng.integers(1_000, 2_000, size=per_user)
        rows += [(user, int(item), 4.0, int(time)) for item, time in zip(items, times, strict=True)]
    frame = pd.DataFrame(rows, columns=["user_idx", "item_idx", "rating", "timestamp"])
    return frame.astype({"user_idx": "int32", "item_idx": "int32", "rating": "float32", "timestamp": "int64"})


def _pairs(frame: pd.DataFrame) -> set[tuple[int, int]]:
    """Return the (user, item) pairs of a frame."""
    return set(zip(frame["user_idx"], frame["item_idx"], strict=True))


def _assert_partition(original: pd.DataFrame, split) -> None:
    """Assert the three parts are disjoint and together hold exactly the original rows."""
    train, valid, test = _pairs(split.train), _pairs(split.valid), _pairs(split.test)
    assert not train & test and not train & valid and not valid & test
    assert train | valid | test == _pairs(original)
    assert len(split.train) + len(split.valid) + len(split.test) == len(original)


def test_leave_last_out_holds_out_each_users_latest_interaction() -> None:
    frame = _interactions()
    split = leave_last_out(frame)
    _assert_partition(frame, split)
    assert len(split.test) == len(split.valid) == 30
    for user, group in frame.groupby("user_idx"):
        latest = group.sort_values(["timestamp", "item_idx"]).iloc[-1]
        second = group.sort_values(["timestamp", "item_idx"]).iloc[-2]
        assert split.test.loc[split.test.user_idx == user, "item_idx"].item() == latest.item_idx
        assert split.valid.loc[split.valid.user_idx == user, "item_idx"].item() == second.item_idx
        assert split.train.loc[split.train.user_idx == user, "timestamp"].max() <= second.timestamp


def test_leave_last_out_breaks_timestamp_ties_by_item_index() -> None:
    frame = pd.DataFrame(
        {"user_idx": [0, 0, 0], "item_idx": [7, 3, 5], "rating": [1.0] * 3, "timestamp": [10, 10, 10]}
    )
    split = leave_last_out(frame)
    assert split.test["item_idx"].tolist() == [7]
    assert split.valid["item_idx"].tolist() == [5]
    assert split.train["item_idx"].tolist() == [3]


def test_leave_last_out_keeps_short_histories_in_train() -> None:
    frame = pd.DataFrame(
        {"user_idx": [0, 1, 1], "item_idx": [1, 1, 2], "rating": [1.0] * 3, "timestamp": [5, 5, 6]}
    )
    split = leave_last_out(frame)
    assert _pairs(split.train) == {(0, 1), (1, 1)}
    assert _pairs(split.test) == {(1, 2)}
    assert split.valid.empty


def test_temporal_ratio_holds_out_each_users_latest_share_in_time_order() -> None:
    # 30 users × 12 rows, 10% / 10%: round(1.2) = 1 test and 1 validation row each (as leave_last_out);
    # 25 rows (one user below): round(2.5) = 2 (numpy rounds half to even) test, 2 validation.
    frame = _interactions()
    long_user = _interactions(n_users=1, per_user=25, seed=3).assign(user_idx=30)
    frame = pd.concat([frame, long_user.astype(frame.dtypes.to_dict())], ignore_index=True)
    split = temporal_ratio(frame, valid_ratio=0.1, test_ratio=0.1)
    _assert_partition(frame, split)
    assert _pairs(split.test) | _pairs(split.valid) >= _pairs(leave_last_out(frame.iloc[:360]).test)
    for user, group in frame.groupby("user_idx"):
        ordered = group.sort_values(["timestamp", "item_idx"])["item_idx"].tolist()
        n_held = 2 if user == 30 else 1
        assert split.test.loc[split.test.user_idx == user, "item_idx"].tolist() == ordered[-n_held:]
        expected_valid = ordered[-2 * n_held : -n_held]
        assert split.valid.loc[split.valid.user_idx == user, "item_idx"].tolist() == expected_valid


def test_temporal_ratio_keeps_one_train_row_and_is_chosen_by_name() -> None:
    frame = pd.DataFrame(
        {"user_idx": [0, 1, 1, 2, 2, 2], "item_idx": [1, 1, 2, 1, 2, 3], "rating": [1.0] * 6,
         "timestamp": [5, 5, 6, 1, 2, 3]}
    )  # fmt: skip
    split = temporal_ratio(frame, valid_ratio=0.1, test_ratio=0.1)
    assert _pairs(split.train) == {(0, 1), (1, 1), (2, 1)}
    assert _pairs(split.test) == {(1, 2), (2, 3)}
    assert _pairs(split.valid) == {(2, 2)}
    by_name = make_split(frame, SplitConfig(name="temporal_ratio"))
    assert _pairs(by_name.test) == _pairs(split.test)


def test_random_ratio_gives_each_user_the_configured_shares() -> None:
    frame = _interactions(per_user=20)
    split = random_ratio(frame, valid_ratio=0.1, test_ratio=0.2, seed=3)
    _assert_partition(frame, split)
    assert (split.test.groupby("user_idx").size() == 4).all()
    assert (split.valid.groupby("user_idx").size() == 2).all()
    assert (split.train.groupby("user_idx").size() == 14).all()


def test_random_ratio_is_reproduced_by_its_seed_and_changed_by_another() -> None:
    frame = _interactions()
    first = random_ratio(frame, valid_ratio=0.1, test_ratio=0.1, seed=42)
    again = random_ratio(frame.sample(frac=1.0, random_state=1), valid_ratio=0.1, test_ratio=0.1, seed=42)
    other = random_ratio(frame, valid_ratio=0.1, test_ratio=0.1, seed=43)
    assert _pairs(first.test) == _pairs(again.test)
    assert _pairs(first.test) != _pairs(other.test)


def test_random_ratio_never_empties_a_users_train() -> None:
    frame = _interactions(n_users=5, per_user=2)
    split = random_ratio(frame, valid_ratio=0.5, test_ratio=0.5, seed=0)
    assert set(split.train["user_idx"]) == set(range(5))


def test_cold_items_never_appear_in_train_and_split_between_valid_and_test() -> None:
    frame = _interactions(n_users=50, per_user=15, n_items=60)
    split = cold_items(
        frame, eligible_items=np.arange(60), cold_item_ratio=0.1, valid_ratio=0.1, test_ratio=0.1, seed=7
    )
    _assert_partition(frame, split)
    assert len(split.cold_items) == 6
    assert not set(split.train["item_idx"]) & set(split.cold_items)
    cold_in_valid = set(split.valid["item_idx"]) & set(split.cold_items)
    cold_in_test = set(split.test["item_idx"]) & set(split.cold_items)
    assert cold_in_valid and cold_in_test and not cold_in_valid & cold_in_test


def test_cold_items_only_holds_out_eligible_items() -> None:
    frame = _interactions(n_users=50, per_user=15, n_items=60)
    eligible = np.arange(0, 60, 2)
    split = cold_items(
        frame, eligible_items=eligible, cold_item_ratio=0.2, valid_ratio=0.1, test_ratio=0.1, seed=1
    )
    assert set(split.cold_items) <= set(eligible)


def test_coat_random_tests_on_the_random_set_without_already_rated_pairs() -> None:
    train = _interactions(n_users=10, per_user=8, n_items=30)
    overlap = train.iloc[[0]]
    fresh = pd.DataFrame(
        {"user_idx": [0, 1], "item_idx": [29, 28], "rating": [5.0, 4.0], "timestamp": [0, 0]}
    )
    fresh = fresh[~fresh.set_index(["user_idx", "item_idx"]).index.isin(_pairs(train))]
    split = coat_random(train, pd.concat([overlap, fresh]), valid_ratio=0.25, seed=0)
    assert _pairs(split.test) == _pairs(fresh)
    assert _pairs(split.train) | _pairs(split.valid) == _pairs(train)


def test_make_split_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown split"):
        make_split(_interactions(), SplitConfig(name="bogus"))
