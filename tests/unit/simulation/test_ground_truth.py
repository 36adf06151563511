"""Pools, hidden interests and the leak-free training set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from explorec.config.simulation import SimulateConfig
from explorec.data.processed import ProcessedDataset
from explorec.simulation.environment import build_world
from explorec.simulation.ground_truth import (
    LeakageError,
    check_no_leakage,
    draw_pools,
    restrict_dataset,
    split_visible_hidden,
    training_interactions,
)
from tests.unit.simulation.conftest import N_ITEMS, N_USERS


def test_earliest_half_is_visible() -> None:
    positives = pd.DataFrame(
        {
            "user_idx": [0, 0, 0, 0, 0, 1, 1],
            "item_idx": [5, 6, 7, 8, 9, 1, 2],
            "timestamp": [50, 10, 40, 20, 30, 2, 1],
        }
    )
    visible, hidden = split_visible_hidden(positives=positives, users=np.array([0, 1]), visible_share=0.5)
    # user 0: by time 6(10), 8(20), 9(30) | 7(40), 5(50); ceil(2.5) = 3 visible. user 1: 2(1) | 1(2).
    assert sorted(visible[visible.user_idx == 0].item_idx) == [6, 8, 9]
    assert sorted(hidden[hidden.user_idx == 0].item_idx) == [5, 7]
    assert list(visible[visible.user_idx == 1].item_idx) == [2]
    assert list(hidden[hidden.user_idx == 1].item_idx) == [1]


def test_pools_are_disjoint_seeded_and_eligible(positives: pd.DataFrame) -> None:
    first = draw_pools(positives=positives, min_user_positives=15, tune_users=8, test_users=10, seed=1)
    again = draw_pools(positives=positives, min_user_positives=15, tune_users=8, test_users=10, seed=1)
    counts = positives.groupby("user_idx").size()
    assert np.intersect1d(first.tune, first.test).size == 0
    assert (first.tune.size, first.test.size) == (8, 10)
    assert np.array_equal(first.test, again.test) and np.array_equal(first.tune, again.tune)
    assert (counts[first.simulated] >= 15).all()
    with pytest.raises(ValueError, match="only"):
        draw_pools(positives=positives, min_user_positives=15, tune_users=50, test_users=50, seed=1)


def test_training_set_never_holds_a_hidden_positive(
    positives: pd.DataFrame, small_config: SimulateConfig
) -> None:
    world = build_world(positives=positives, n_users=N_USERS, n_items=N_ITEMS, cfg=small_config)
    keys = ["user_idx", "item_idx"]
    assert world.training[keys].merge(world.hidden[keys]).empty
    simulated_rows = world.training[world.training.user_idx.isin(world.pools.simulated)]
    assert len(simulated_rows) == len(world.visible)
    others = positives[~positives.user_idx.isin(world.pools.simulated)]
    assert len(world.training) == len(others) + len(world.visible)


def test_leakage_raises(positives: pd.DataFrame) -> None:
    users = np.array([0, 1, 2])
    visible, hidden = split_visible_hidden(positives=positives, users=users, visible_share=0.5)
    leaky_visible = pd.concat([visible, hidden.iloc[:1]], ignore_index=True)
    with pytest.raises(LeakageError, match="hidden positives"):
        training_interactions(
            positives=positives, simulated_users=users, visible=leaky_visible, hidden=hidden
        )
    with pytest.raises(LeakageError):
        check_no_leakage(training=positives, hidden=hidden)


def test_restrict_dataset_drops_everything_after_the_cutoff(positives: pd.DataFrame) -> None:
    users = np.array([0, 1])
    visible, hidden = split_visible_hidden(positives=positives, users=users, visible_share=0.5)
    frame = positives.assign(rating=5.0)
    dataset = ProcessedDataset(
        path=None, train=frame, valid=frame.iloc[:0], test=frame.iloc[:0], items=None, users=None, manifest={}
    )  # type: ignore[arg-type]
    restricted = restrict_dataset(dataset, visible=visible, hidden=hidden)
    kept = restricted.train[restricted.train.user_idx.isin(users)]
    assert len(kept) == len(visible)
    assert len(restricted.train) == len(positives) - len(hidden)
