"""The simulated world: pools, visible/hidden positives, training set, ground truth, noise, click models.

In the churn world (`explorec.simulation.churn`) some items are new: withheld from the training set and the
visible histories, known to the ground truth, entering the catalogue during the horizon (`arrivals`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from explorec.config.simulation import SimulateConfig
from explorec.simulation.calibration import ClickModel, calibrate_click_model
from explorec.simulation.churn import (
    Arrivals,
    check_no_new_items,
    draw_arrivals,
    static_arrivals,
    withhold_from_visible,
    without_new_items,
)
from explorec.simulation.ground_truth import (
    GroundTruth,
    GroundTruthFits,
    GroundTruthSpec,
    UserPools,
    draw_pools,
    fit_ground_truth,
    frozen_noise,
    split_visible_hidden,
    training_interactions,
)


def position_weights(slate_size: int) -> np.ndarray:
    """θ_k = 1 / log2(k + 1) for slots k = 1..K."""
    return 1.0 / np.log2(np.arange(2, slate_size + 2))


@dataclass(frozen=True)
class SimulationWorld:
    """Everything about the simulated users that does not depend on a policy or replication."""

    n_users: int
    n_items: int
    pools: UserPools
    visible: pd.DataFrame
    hidden: pd.DataFrame
    training: pd.DataFrame
    ground_truth: GroundTruth
    noise: np.ndarray
    click_models: tuple[ClickModel, ...]
    arrivals: Arrivals

    def _rows(self, users: np.ndarray) -> np.ndarray:
        """Rows of ground_truth/noise arrays that belong to `users`."""
        rows = np.searchsorted(self.ground_truth.users, users)
        if (rows >= self.ground_truth.users.size).any() or (self.ground_truth.users[rows] != users).any():
            raise KeyError("some users are not simulated users")
        return rows

    def noisy_scores(self, users: np.ndarray) -> np.ndarray:
        """z + ε of `users` (len(users), n_items)."""
        rows = self._rows(np.asarray(users, np.int64))
        return self.ground_truth.standardised_scores[rows] + self.noise[rows]

    def click_probabilities(self, users: np.ndarray, click_model: ClickModel) -> np.ndarray:
        """p(u, i) of `users` under one click model."""
        return click_model.probabilities(self.noisy_scores(users))

    def visible_mask(self, users: np.ndarray) -> np.ndarray:
        """Boolean (len(users), n_items): True where the item is in the user's visible history."""
        return _membership(self.visible, users, self.n_items)

    def visible_items(self, users: np.ndarray) -> list[np.ndarray]:
        """Each user's visible positives."""
        return _items_by_user(self.visible, users)

    def hidden_items(self, users: np.ndarray) -> list[np.ndarray]:
        """Each user's hidden positives."""
        return _items_by_user(self.hidden, users)

    def item_popularity(self) -> tuple[np.ndarray, int]:
        """(number of training users per item, number of training users) for novelty."""
        counts = np.bincount(self.training["item_idx"].to_numpy(), minlength=self.n_items)
        return counts, int(self.training["user_idx"].nunique())


def _membership(frame: pd.DataFrame, users: np.ndarray, n_items: int) -> np.ndarray:
    """Boolean (len(users), n_items) of the (user, item) pairs of `frame`."""
    mask = np.zeros((len(users), n_items), dtype=bool)
    row_of = pd.Series(np.arange(len(users)), index=np.asarray(users))
    selected = frame[frame["user_idx"].isin(users)]
    mask[row_of[selected["user_idx"]].to_numpy(), selected["item_idx"].to_numpy()] = True
    return mask


def _items_by_user(frame: pd.DataFrame, users: np.ndarray) -> list[np.ndarray]:
    """The items of each user in `frame`, in user order."""
    grouped = frame.groupby("user_idx")["item_idx"].apply(lambda s: s.to_numpy(np.int64))
    return [grouped.get(int(u), np.empty(0, np.int64)) for u in users]


def world_arrivals(
    *, positives: pd.DataFrame, n_items: int, items_with_text: np.ndarray | None, cfg: SimulateConfig
) -> Arrivals:
    """The world's item arrivals: none new (static) or new items drawn among items with text and positives."""
    if cfg.world == "static":
        return static_arrivals(n_items)
    if cfg.world != "churn":
        raise ValueError(f"simulate.world must be static or churn, got {cfg.world!r}")
    eligible = np.unique(positives["item_idx"].to_numpy(np.int64))
    if items_with_text is not None:
        eligible = np.intersect1d(eligible, np.asarray(items_with_text, np.int64))
    return draw_arrivals(
        eligible_items=eligible,
        n_items=n_items,
        share=cfg.churn_share,
        initial_share=cfg.churn_initial_share,
        n_visits=cfg.n_visits,
        seed=cfg.seed,
    )


def ground_truth_spec(cfg: SimulateConfig) -> GroundTruthSpec:
    """The ground truth the config asks for, with its own λ grid."""
    return GroundTruthSpec(
        kind=cfg.ground_truth,
        l2_grid=tuple(cfg.ials_l2_grid if cfg.ground_truth == "ials" else cfg.ease_l2_grid),
        holdout_share=cfg.ease_holdout_share,
        popularity_damping=cfg.popularity_damping,
        ials_factors=cfg.ials_factors,
        ials_alpha=cfg.ials_alpha,
        ials_iterations=cfg.ials_iterations,
    )


def build_world(
    *,
    positives: pd.DataFrame,
    n_users: int,
    n_items: int,
    cfg: SimulateConfig,
    items_with_text: np.ndarray | None = None,
    truth_fits: GroundTruthFits | None = None,
) -> SimulationWorld:
    """Draw pools, hide interests, build the leak-free training set, fit the ground truth, calibrate clicks.

    Calibration runs over both pools together (the simulated population), so tune and test share a, b.
    `items_with_text` (None: every item) are the items the churn world may make new; `truth_fits` shares
    ground-truth fits between worlds built on the same positives (see `GroundTruthFits`).
    """
    pools = draw_pools(
        positives=positives,
        min_user_positives=cfg.min_user_positives,
        tune_users=cfg.tune_users,
        test_users=cfg.test_users,
        seed=cfg.seed,
    )
    simulated = pools.simulated
    visible, hidden = split_visible_hidden(
        positives=positives, users=simulated, visible_share=cfg.visible_share
    )
    arrivals = world_arrivals(positives=positives, n_items=n_items, items_with_text=items_with_text, cfg=cfg)
    visible, hidden = withhold_from_visible(visible=visible, hidden=hidden, arrivals=arrivals)
    training = training_interactions(
        positives=without_new_items(positives, arrivals),
        simulated_users=simulated,
        visible=visible,
        hidden=hidden,
    )
    check_no_new_items(training, arrivals, where="the training set")
    truth = fit_ground_truth(
        positives=positives,
        users=simulated,
        n_users=n_users,
        n_items=n_items,
        spec=ground_truth_spec(cfg),
        test_users=pools.test,
        seed=cfg.seed,
        fits=truth_fits,
    )
    noise = frozen_noise(users=simulated, n_items=n_items, noise_std=cfg.noise_std, seed=cfg.seed)
    noisy, mask = truth.standardised_scores + noise, _membership(visible, simulated, n_items)
    models = tuple(
        calibrate_click_model(
            noisy_scores=noisy,
            visible_mask=mask,
            name=target.name,
            mean_click_probability=target.mean_click_probability,
            top10_click_probability=target.top10_click_probability,
        )
        for target in cfg.calibrations
    )
    return SimulationWorld(n_users, n_items, pools, visible, hidden, training, truth, noise, models, arrivals)
