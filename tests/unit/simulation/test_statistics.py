"""Paired t intervals, Holm correction, break-even and the batched online model, on hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from explorec.evaluation.statistics import (
    fit_logistic,
    fit_logistic_regression,
    holm_adjust,
    paired_difference,
)
from explorec.simulation.calibration import fit_platt_prior
from explorec.simulation.metrics import break_even_visit
from explorec.simulation.online import OnlineResidualModel


def test_paired_t_interval_hand_case() -> None:
    # differences 2, 3, 4: mean 3, sd 1, se 1/√3; t(0.975, 2) = 4.302653 → half width 2.484138.
    result = paired_difference(treatment=np.array([3.0, 5.0, 7.0]), control=np.array([1.0, 2.0, 3.0]))
    assert result.mean == pytest.approx(3.0)
    assert result.ci_low == pytest.approx(3.0 - 2.484138, abs=1e-5)
    assert result.ci_high == pytest.approx(3.0 + 2.484138, abs=1e-5)
    assert result.p_value == pytest.approx(0.035099, abs=1e-5)  # 2·P(T₂ > 3√3)


def test_paired_interval_without_spread_is_the_point() -> None:
    result = paired_difference(treatment=np.array([2.0, 3.0]), control=np.array([1.0, 2.0]))
    assert (result.ci_low, result.ci_high, result.p_value) == (1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="two pairs"):
        paired_difference(treatment=np.array([1.0]), control=np.array([0.0]))


def test_holm_hand_case() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 → ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 → running max …, 0.06, 0.06.
    adjusted = holm_adjust(p_values=np.array([0.01, 0.04, 0.03, 0.005]))
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust(p_values=np.array([0.6, 0.9])) == pytest.approx([1.0, 1.0])


def test_break_even_visit() -> None:
    assert break_even_visit(np.array([-1.0, -0.5, 0.2, 0.4])) == 3.0
    assert break_even_visit(np.array([0.1, -0.1, 0.2])) == 3.0
    assert break_even_visit(np.array([0.1, 0.2])) == 1.0
    assert np.isnan(break_even_visit(np.array([0.1, -0.2])))


def test_online_model_matches_the_batch_posterior() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(30, 4))
    model = OnlineResidualModel(features=features, n_users=2, noise_std=0.2, prior_std=0.1)
    items = np.array([[0, 5, 7], [3, 4, 9]])
    clicks = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    prior = rng.uniform(0.0, 0.3, size=(2, 30))
    weights = np.array([1.0, 0.6, 0.5])
    model.observe(items=items, clicks=clicks, prior=prior, position_weights=weights)
    for user in range(2):
        f = weights[:, None] * features[items[user]]
        y = clicks[user] - weights * prior[user, items[user]]
        precision = 4.0 * np.eye(4) + f.T @ f  # (σ/τ)² = 4
        assert model.a_inverse[user] == pytest.approx(np.linalg.inv(precision))
        expected_mean = prior[user] + features @ np.linalg.solve(precision, f.T @ y)
        assert model.mean_scores(prior)[user] == pytest.approx(expected_mean)


def test_logistic_fit_recovers_known_parameters() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=200_000)
    y = rng.random(x.size) < 1.0 / (1.0 + np.exp(-(1.5 * x - 3.0)))
    slope, intercept = fit_logistic(feature=x, target=y)
    assert slope == pytest.approx(1.5, abs=0.05)
    assert intercept == pytest.approx(-3.0, abs=0.05)


def test_logistic_regression_recovers_two_features() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200_000, 2))
    y = rng.random(len(x)) < 1.0 / (1.0 + np.exp(-(1.2 * x[:, 0] - 0.7 * x[:, 1] - 2.5)))
    weights = fit_logistic_regression(features=x, target=y)
    assert weights == pytest.approx([1.2, -0.7, -2.5], abs=0.05)


def test_popularity_prior_corrects_a_recommender_that_ignores_popularity() -> None:
    rng = np.random.default_rng(2)
    n_users, n_items = 400, 300
    popularity = rng.integers(0, 500, size=n_items)
    taste = rng.normal(size=(n_users, n_items))
    # clicks rise with taste and with log popularity; the recommender scores only the taste
    truth = expit(1.0 * taste + 0.6 * np.log1p(popularity)[None, :] - 6.0)
    visible = rng.random((n_users, n_items)) < 0.1
    plain = fit_platt_prior(
        recommender_scores=taste,
        click_probabilities=truth,
        visible_mask=visible,
        rng=np.random.default_rng(3),
    )
    with_popularity = fit_platt_prior(
        recommender_scores=taste,
        click_probabilities=truth,
        visible_mask=visible,
        rng=np.random.default_rng(3),
        item_popularity=popularity,
    )
    assert plain.popularity_slope == 0.0 and plain.item_log_popularity is None
    # the scores are standardised per row, so the taste slope is 1 · std(taste row) ≈ 1
    assert with_popularity.popularity_slope == pytest.approx(0.6, abs=0.08)
    assert with_popularity.slope == pytest.approx(1.0, abs=0.1)
    servable = ~visible
    # the prior with popularity is closer to the truth than the plain one
    plain_error = np.abs(plain.probabilities(taste) - truth)[servable].mean()
    popularity_error = np.abs(with_popularity.probabilities(taste) - truth)[servable].mean()
    assert popularity_error < 0.5 * plain_error


def test_popularity_prior_rejects_a_popularity_vector_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match="item_popularity has shape"):
        fit_platt_prior(
            recommender_scores=np.zeros((2, 3)),
            click_probabilities=np.full((2, 3), 0.1),
            visible_mask=np.zeros((2, 3), bool),
            rng=np.random.default_rng(0),
            item_popularity=np.ones(4),
        )
