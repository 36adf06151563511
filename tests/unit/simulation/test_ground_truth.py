"""Pools, hidden interests and the leak-free training set."""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from explorec.config.simulation import SimulateConfig
from explorec.data.processed import ProcessedDataset, interactions_to_csr
from explorec.simulation.calibration import top_servable
from explorec.simulation.environment import build_world
from explorec.simulation.ground_truth import (
    GROUND_TRUTHS,
    GroundTruthFits,
    LeakageError,
    check_no_leakage,
    choose_l2,
    draw_pools,
    holdout_split,
    ials_scorer,
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


@pytest.mark.parametrize("kind", GROUND_TRUTHS)
def test_each_ground_truth_meets_the_calibration_targets(
    kind: str, positives: pd.DataFrame, small_config: SimulateConfig
) -> None:
    cfg = dataclasses.replace(small_config, ground_truth=kind)
    world = build_world(positives=positives, n_users=N_USERS, n_items=N_ITEMS, cfg=cfg)
    grid = cfg.ials_l2_grid if kind == "ials" else cfg.ease_l2_grid
    assert world.ground_truth.kind == kind
    assert world.ground_truth.l2 in grid and set(world.ground_truth.holdout_recall) == set(grid)
    users = world.pools.simulated
    for target, model in zip(cfg.calibrations, world.click_models, strict=True):
        assert world.click_probabilities(users, model).mean() == pytest.approx(
            target.mean_click_probability, abs=1e-4
        )
        top = model.probabilities(top_servable(world.noisy_scores(users), world.visible_mask(users)))
        assert float(np.mean(top)) == pytest.approx(target.top10_click_probability, abs=1e-3)


def test_worlds_share_a_ground_truth_fit_only_where_it_would_come_out_the_same(
    positives: pd.DataFrame, small_config: SimulateConfig
) -> None:
    fits = GroundTruthFits()
    shared, alone = {}, {}
    for kind in GROUND_TRUTHS:
        cfg = dataclasses.replace(small_config, ground_truth=kind)
        for key in ("a", "b"):  # two worlds on the same positives and pools
            shared[kind, key] = build_world(
                positives=positives, n_users=N_USERS, n_items=N_ITEMS, cfg=cfg, truth_fits=fits
            ).ground_truth
        alone[kind] = build_world(positives=positives, n_users=N_USERS, n_items=N_ITEMS, cfg=cfg).ground_truth
    assert fits.computed == 2  # one EASE fit (EASE and its dampened variant), one iALS fit
    for (kind, _), truth in shared.items():
        assert truth.kind == kind and truth.l2 == alone[kind].l2
        np.testing.assert_array_equal(truth.standardised_scores, alone[kind].standardised_scores)
    # another seed draws other pools and holdout: a new fit, equal to fitting it alone
    other = dataclasses.replace(small_config, ground_truth="ease", seed=small_config.seed + 1)
    reseeded = build_world(positives=positives, n_users=N_USERS, n_items=N_ITEMS, cfg=other, truth_fits=fits)
    assert fits.computed == 3
    np.testing.assert_array_equal(
        reseeded.ground_truth.standardised_scores,
        build_world(
            positives=positives, n_users=N_USERS, n_items=N_ITEMS, cfg=other
        ).ground_truth.standardised_scores,
    )


def _top10(scores: np.ndarray) -> list[set[int]]:
    """Each row's ten highest-scoring items."""
    return [set(row) for row in np.argsort(-scores, axis=1)[:, :10]]


def test_ground_truths_rank_items_differently(positives: pd.DataFrame, small_config: SimulateConfig) -> None:
    worlds = {
        kind: build_world(
            positives=positives,
            n_users=N_USERS,
            n_items=N_ITEMS,
            cfg=dataclasses.replace(small_config, ground_truth=kind),
        )
        for kind in GROUND_TRUTHS
    }
    tops = {kind: _top10(world.ground_truth.standardised_scores) for kind, world in worlds.items()}
    for first, second in itertools.combinations(GROUND_TRUTHS, 2):
        overlap = np.mean([len(a & b) / 10 for a, b in zip(tops[first], tops[second], strict=True)])
        assert overlap < 0.9, (first, second, overlap)
    # the dampened truth puts less popular items in every user's top 10 than EASE does, on average
    log_popularity = np.log1p(np.bincount(positives["item_idx"], minlength=N_ITEMS))
    mean_top_popularity = {
        kind: np.mean([log_popularity[list(top)].mean() for top in tops[kind]]) for kind in GROUND_TRUTHS
    }
    assert mean_top_popularity["ease_popularity_dampened"] < mean_top_popularity["ease"] - 0.1


def test_ials_ground_truth_beats_popularity_on_its_holdout(
    positives: pd.DataFrame, small_config: SimulateConfig
) -> None:
    """The chosen λ's holdout recall@20 is above what the most popular items reach on the same holdout."""
    cfg = dataclasses.replace(small_config, ground_truth="ials")
    pools = draw_pools(
        positives=positives,
        min_user_positives=cfg.min_user_positives,
        tune_users=cfg.tune_users,
        test_users=cfg.test_users,
        seed=cfg.seed,
    )
    matrix = interactions_to_csr(positives, n_users=N_USERS, n_items=N_ITEMS)
    holdout_users = np.setdiff1d(np.arange(N_USERS), pools.test)

    def popularity(train: sp.csr_matrix, _l2: float) -> Callable[[np.ndarray], np.ndarray]:
        counts = np.asarray(train.sum(axis=0), float)
        return lambda users: np.tile(counts, (len(users), 1))

    kwargs = {"matrix": matrix, "holdout_share": 0.1, "holdout_users": holdout_users, "seed": cfg.seed}
    _, popular = choose_l2(scorer=popularity, l2_grid=[1.0], **kwargs)
    scorer = functools.partial(ials_scorer, factors=cfg.ials_factors, alpha=1.0, iterations=15, seed=0)
    _, recalls = choose_l2(scorer=scorer, l2_grid=list(cfg.ials_l2_grid), **kwargs)
    assert max(recalls.values()) > popular[1.0]


def test_holdout_takes_entries_only_from_the_given_users(positives: pd.DataFrame) -> None:
    matrix = interactions_to_csr(positives, n_users=N_USERS, n_items=N_ITEMS)
    allowed = np.arange(0, N_USERS, 2)
    kept, held = holdout_split(matrix, share=0.5, rng=np.random.default_rng(0), rows=allowed)
    held_rows = np.unique(held.tocoo().row)
    assert held.nnz > 0 and np.isin(held_rows, allowed).all()
    assert (kept + held != matrix).nnz == 0  # a partition of the entries
