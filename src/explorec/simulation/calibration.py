"""Calibration of the click model p = σ(a·(z + ε) + b) to targets, and Platt scaling of the recommender.

`calibrate_click_model` solves two monotone equations with Brent's method: for a given a, b(a) makes the
mean p over all (user, item) equal the target mean; then a is chosen so that the mean over users of their
top-10 p among servable items (outside the visible history) equals the top-10 target. The top-10 set does
not depend on (a > 0, b), so it is found once.

`fit_platt_prior` fits σ(α·s + β) of the per-user standardised recommender score s to clicks from a
uniform exposure log of the tune pool (every servable item shown once at the top slot, clicks ~ Bernoulli(p)),
i.e. a historical log that a deployed system would have. Only tune-pool users are used, so a test-pool run
never fits anything on test users.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit

from explorec.evaluation.statistics import fit_logistic, fit_logistic_regression
from explorec.simulation.ground_truth import standardise_rows

MIN_SLOPE, MAX_SLOPE = 1e-3, 20.0


@dataclass(frozen=True)
class ClickModel:
    """a, b of p = σ(a·(z + ε) + b) and the mean and top-10 mean p they reach."""

    name: str
    slope: float
    intercept: float
    mean_click_probability: float
    top10_click_probability: float

    def probabilities(self, noisy_scores: np.ndarray) -> np.ndarray:
        """p = σ(a·(z + ε) + b) for an array of z + ε."""
        return expit(self.slope * noisy_scores + self.intercept)


def top_servable(noisy_scores: np.ndarray, visible_mask: np.ndarray, k: int = 10) -> np.ndarray:
    """Per user, the k largest z + ε among items outside the visible history (n_users, k)."""
    masked = np.where(visible_mask, -np.inf, noisy_scores)
    return -np.sort(-np.partition(masked, masked.shape[1] - k, axis=1)[:, -k:], axis=1)


def intercept_for_mean(noisy_scores: np.ndarray, slope: float, target_mean: float) -> float:
    """b such that the mean of σ(a·x + b) over all entries equals target_mean."""
    flat = noisy_scores.ravel()
    low, high = -slope * float(flat.max()) - 40.0, -slope * float(flat.min()) + 40.0
    return float(brentq(lambda b: expit(slope * flat + b).mean() - target_mean, low, high, xtol=1e-10))


def calibrate_click_model(
    *,
    noisy_scores: np.ndarray,
    visible_mask: np.ndarray,
    name: str,
    mean_click_probability: float,
    top10_click_probability: float,
) -> ClickModel:
    """Solve a, b so the mean p and the users' mean top-10 p hit their targets (raises if unreachable)."""
    if not 0 < mean_click_probability < top10_click_probability < 1:
        raise ValueError("targets must satisfy 0 < mean < top-10 mean < 1")
    top = top_servable(noisy_scores, visible_mask)

    def top_gap(slope: float) -> float:
        intercept = intercept_for_mean(noisy_scores, slope, mean_click_probability)
        return float(expit(slope * top + intercept).mean()) - top10_click_probability

    low_gap, high_gap = top_gap(MIN_SLOPE), top_gap(MAX_SLOPE)
    if low_gap > 0 or high_gap < 0:
        raise ValueError(
            f"calibration {name!r} unreachable: at mean p = {mean_click_probability} the top-10 mean spans "
            f"[{low_gap + top10_click_probability:.3f}, {high_gap + top10_click_probability:.3f}] for a in "
            f"[{MIN_SLOPE}, {MAX_SLOPE}]"
        )
    slope = float(brentq(top_gap, MIN_SLOPE, MAX_SLOPE, xtol=1e-6))
    intercept = intercept_for_mean(noisy_scores, slope, mean_click_probability)
    return ClickModel(
        name=name,
        slope=slope,
        intercept=intercept,
        mean_click_probability=float(expit(slope * noisy_scores + intercept).mean()),
        top10_click_probability=float(expit(slope * top + intercept).mean()),
    )


@dataclass(frozen=True)
class PlattPrior:
    """σ(α·s + γ·log(1 + n_i) + β): s the per-user standardised recommender score, n_i the item's popularity.

    γ is 0 (and `item_log_popularity` None) for the plain Platt prior.
    """

    slope: float
    intercept: float
    popularity_slope: float = 0.0
    item_log_popularity: np.ndarray | None = None

    def probabilities(self, recommender_scores: np.ndarray) -> np.ndarray:
        """Calibrated prior click probabilities of rows of raw recommender scores."""
        logits = self.slope * standardise_rows(recommender_scores) + self.intercept
        if self.item_log_popularity is not None:
            logits = logits + self.popularity_slope * self.item_log_popularity[None, :]
        return expit(logits)


def fit_platt_prior(
    *,
    recommender_scores: np.ndarray,
    click_probabilities: np.ndarray,
    visible_mask: np.ndarray,
    rng: np.random.Generator,
    item_popularity: np.ndarray | None = None,
) -> PlattPrior:
    """Fit the prior on one uniform exposure of every servable item (clicks ~ Bernoulli(p)) of these users.

    With `item_popularity` (training interactions per item, known before any simulated visit) the log of
    1 + popularity is a second feature, so the prior can correct a recommender that ranks popular items
    too low or too high relative to what people click.
    """
    servable = ~visible_mask
    clicks = rng.random(click_probabilities.shape) < click_probabilities
    standardised = standardise_rows(recommender_scores)
    if item_popularity is None:
        slope, intercept = fit_logistic(feature=standardised[servable], target=clicks[servable])
        return PlattPrior(slope, intercept)
    log_popularity = np.log1p(np.asarray(item_popularity, np.float64))
    if log_popularity.shape != (recommender_scores.shape[1],):
        raise ValueError(
            f"item_popularity has shape {log_popularity.shape}; expected ({recommender_scores.shape[1]},)"
        )
    columns = np.column_stack(
        [standardised[servable], np.broadcast_to(log_popularity, standardised.shape)[servable]]
    )
    slope, popularity_slope, intercept = fit_logistic_regression(features=columns, target=clicks[servable])
    return PlattPrior(float(slope), float(intercept), float(popularity_slope), log_popularity)
