"""Paired comparisons across replications: mean difference, paired t interval, p-value, Holm correction."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.special import expit


@dataclass(frozen=True)
class PairedDifference:
    """Mean of paired differences with a two-sided t interval and p-value (H0: mean difference = 0)."""

    mean: float
    ci_low: float
    ci_high: float
    p_value: float
    n_pairs: int


def paired_difference(
    *, treatment: np.ndarray, control: np.ndarray, confidence: float = 0.95
) -> PairedDifference:
    """Paired t interval of mean(treatment − control); zero spread gives the point itself (p = 0 or 1)."""
    differences = np.asarray(treatment, np.float64) - np.asarray(control, np.float64)
    n = differences.size
    if n < 2:
        raise ValueError("a paired t interval needs at least two pairs")
    mean = float(differences.mean())
    standard_error = float(differences.std(ddof=1) / np.sqrt(n))
    if standard_error == 0.0:
        return PairedDifference(mean, mean, mean, 0.0 if mean != 0 else 1.0, n)
    half_width = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * standard_error
    p_value = float(2 * stats.t.sf(abs(mean) / standard_error, df=n - 1))
    return PairedDifference(mean, mean - half_width, mean + half_width, p_value, n)


def holm_adjust(*, p_values: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error control), in the input order."""
    p_values = np.asarray(p_values, np.float64)
    m = p_values.size
    order = np.argsort(p_values, kind="stable")
    adjusted_sorted = np.maximum.accumulate((m - np.arange(m)) * p_values[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(adjusted_sorted, 1.0)
    return adjusted


def fit_logistic_regression(*, features: np.ndarray, target: np.ndarray, iterations: int = 50) -> np.ndarray:
    """Weights per column of `features` (n, k), then the intercept, maximising the Bernoulli likelihood."""
    x = np.column_stack([np.asarray(features, np.float64).reshape(target.size, -1), np.ones(target.size)])
    y = target.ravel().astype(np.float64)
    weights = np.zeros(x.shape[1])
    weights[-1] = np.log(max(y.mean(), 1e-6) / max(1 - y.mean(), 1e-6))
    ridge = 1e-6 * np.eye(x.shape[1])
    for _ in range(iterations):
        p = expit(x @ weights)
        gradient = x.T @ (y - p) - ridge @ weights
        hessian = (x * (p * (1 - p))[:, None]).T @ x + ridge
        step = np.linalg.solve(hessian, gradient)
        weights += step
        if np.abs(step).max() < 1e-10:
            break
    return weights


def fit_logistic(*, feature: np.ndarray, target: np.ndarray, iterations: int = 50) -> tuple[float, float]:
    """(α, β) maximising the Bernoulli likelihood of σ(α·x + β) (Newton's method, tiny ridge)."""
    slope, intercept = fit_logistic_regression(
        features=np.asarray(feature).ravel()[:, None], target=target, iterations=iterations
    )
    return float(slope), float(intercept)
