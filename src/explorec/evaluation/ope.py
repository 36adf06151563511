"""Off-policy estimators of a target policy's value from logs with propensities: IPS, SNIPS and doubly robust.

Log layout: one row per logged decision. For slates, each (context, slot) is one decision (the per-position
or independence assumption): its reward is that slot's reward (e.g. click), `logging_propensities` the
probability with which the logging policy put the logged item in that slot, and `target_propensities` the
probability with which the target policy would have put that same item there, in the same context. The
estimand is then the target policy's mean reward per decision (per slot), e.g. its CTR. It is unbiased when
each slot's reward depends only on (context, slot, item), not on the other items of the slate, and the
logging propensity is positive wherever the target's is.

With `explorec.policies` slates, `Slate.propensities` (and `Policy.slate_propensities` for a target policy
on a logged slate) are conditional on the earlier slots. Two ways to use them:
- as they are: the context of slot s includes the logged slots 0..s−1, and the estimand is the target's
  reward at slot s when it fills that slot after the *logged* earlier slots;
- through `prefix_propensities` (cumulative products over slots, for both policies): the weight of slot s is
  P_target(first s+1 items) / P_logging(first s+1 items), and the estimand is the target's own on-policy
  reward per slot, unbiased when a slot's reward depends only on the items in slots 0..s (e.g. a
  position-based click model). Weights, and variance, grow with the slot index.

Every estimator returns a `PolicyValueEstimate` with a confidence interval: a normal approximation
(`ci_method="normal"`, from the per-decision terms; for SNIPS the delta method) or a percentile bootstrap
over decisions (`ci_method="bootstrap"`, needs a numpy Generator).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import norm

ESTIMATOR_NAMES = (
    "ips",
    "snips",
    "dr",
    "prefix_ips",
    "prefix_snips",
    "prefix_dr",
    "pbm_ips",
    "pbm_snips",
    "pbm_dr",
)
"""Every estimator an evaluation of logged slates may report (`serving.log_evaluation`), in report order."""
CIMethod = Literal["normal", "bootstrap"]
Statistic = Callable[[np.ndarray], np.ndarray]
"""Bootstrap resamples of decision indices [n_resamples, n] → the estimate on each resample."""
BOOTSTRAP_CHUNK = 64
"""Bootstrap resamples drawn at once (bounds memory to BOOTSTRAP_CHUNK × n_decisions indices)."""


@dataclass(frozen=True)
class PolicyValueEstimate:
    """An estimated policy value with its confidence interval."""

    estimate: float
    ci_low: float
    ci_high: float
    standard_error: float
    n_decisions: int
    estimator: str
    ci_method: str

    def contains(self, value: float) -> bool:
        """Whether `value` lies inside the confidence interval."""
        return self.ci_low <= value <= self.ci_high


def importance_weights(*, target_propensities: np.ndarray, logging_propensities: np.ndarray) -> np.ndarray:
    """w = π_target(a|x) / π_logging(a|x) per decision; logging propensities must be positive."""
    target = np.asarray(target_propensities, dtype=np.float64)
    logging = np.asarray(logging_propensities, dtype=np.float64)
    if target.shape != logging.shape or target.ndim != 1:
        raise ValueError(f"propensities must be equal 1-d shapes, got {target.shape} and {logging.shape}")
    if np.isnan(target).any() or np.isnan(logging).any():
        raise ValueError("propensities contain NaN")
    if (logging <= 0).any() or (logging > 1).any() or (target < 0).any() or (target > 1).any():
        raise ValueError("logging propensities must lie in (0, 1] and target propensities in [0, 1]")
    return target / logging


def deterministic_target_propensities(*, target_items: np.ndarray, logged_items: np.ndarray) -> np.ndarray:
    """Propensities of a deterministic target policy: 1 where it would choose the logged item, else 0."""
    return (np.asarray(target_items) == np.asarray(logged_items)).astype(np.float64)


def prefix_propensities(*, slot_propensities: np.ndarray) -> np.ndarray:
    """(n_slates, k) per-slot conditional propensities → probability of each slate's first s+1 items."""
    slot_propensities = np.asarray(slot_propensities, dtype=np.float64)
    if slot_propensities.ndim != 2:
        raise ValueError(f"slot_propensities must be (n_slates, k), got shape {slot_propensities.shape}")
    return np.cumprod(slot_propensities, axis=1)


def _rewards(rewards: np.ndarray, n: int) -> np.ndarray:
    """Rewards as a float vector of length n."""
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.shape != (n,):
        raise ValueError(f"rewards must have shape ({n},), got {rewards.shape}")
    return rewards


def _interval(
    name: str,
    point: float,
    standard_error: float,
    statistic: Statistic,
    *,
    n: int,
    ci_method: CIMethod,
    confidence: float,
    rng: np.random.Generator | None,
    n_bootstrap: int,
) -> PolicyValueEstimate:
    """Wrap a point estimate with a normal or percentile-bootstrap interval."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if ci_method == "normal":
        half_width = float(norm.ppf(0.5 + confidence / 2)) * standard_error
        low, high = point - half_width, point + half_width
    elif ci_method == "bootstrap":
        if rng is None:
            raise ValueError("ci_method='bootstrap' needs a numpy Generator (rng)")
        replicates = np.concatenate(
            [
                statistic(rng.integers(0, n, size=(min(BOOTSTRAP_CHUNK, n_bootstrap - start), n)))
                for start in range(0, n_bootstrap, BOOTSTRAP_CHUNK)
            ]
        )
        low, high = np.quantile(replicates, [(1 - confidence) / 2, (1 + confidence) / 2])
        standard_error = float(np.std(replicates, ddof=1))
    else:
        raise ValueError(f"ci_method must be 'normal' or 'bootstrap', got {ci_method!r}")
    return PolicyValueEstimate(point, float(low), float(high), float(standard_error), n, name, ci_method)


def _mean_of_terms(terms: np.ndarray) -> tuple[float, float, Statistic]:
    """The mean of per-decision terms, its standard error (sample std / sqrt(n)) and bootstrap statistic."""
    n = terms.size
    if n == 0:
        raise ValueError("no logged decisions")
    standard_error = float(np.std(terms, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return float(terms.mean()), standard_error, lambda rows: terms[rows].mean(axis=1)


def _ips(weights: np.ndarray, rewards: np.ndarray) -> tuple[float, float, Statistic]:
    """Inverse propensity scoring: V̂ = mean_i w_i·r_i (unbiased, high variance when weights are large)."""
    return _mean_of_terms(weights * rewards)


def _snips(weights: np.ndarray, rewards: np.ndarray) -> tuple[float, float, Statistic]:
    """Self-normalised IPS: V̂ = Σ w_i r_i / Σ w_i (slightly biased, lower variance; delta-method SE)."""
    n = weights.size
    total_weight = weights.sum()
    if n == 0 or total_weight <= 0:
        raise ValueError("SNIPS needs at least one decision the target policy could have made (Σw > 0)")
    point = float((weights * rewards).sum() / total_weight)
    # Delta method: the influence of decision i is w_i (r_i − V̂) / mean(w).
    influence = weights * (rewards - point) / (total_weight / n)
    standard_error = float(np.std(influence, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")

    def statistic(rows: np.ndarray) -> np.ndarray:
        sampled_weights = weights[rows]
        sums = sampled_weights.sum(axis=1)
        return np.divide(
            (sampled_weights * rewards[rows]).sum(axis=1), sums, out=np.zeros(len(rows)), where=sums > 0
        )

    return point, standard_error, statistic


ESTIMATORS: dict[str, Callable[[np.ndarray, np.ndarray], tuple[float, float, Statistic]]] = {
    "ips": _ips,
    "snips": _snips,
}
"""Estimator name → (importance weights, rewards) → (point estimate, standard error, bootstrap statistic)."""


def estimate_policy_value(
    estimator: str,
    *,
    rewards: np.ndarray,
    logging_propensities: np.ndarray,
    target_propensities: np.ndarray,
    ci_method: CIMethod = "normal",
    confidence: float = 0.95,
    rng: np.random.Generator | None = None,
    n_bootstrap: int = 1000,
) -> PolicyValueEstimate:
    """Estimate the target policy's value per decision with `estimator` (ips or snips), with an interval."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; expected one of {sorted(ESTIMATORS)}")
    weights = importance_weights(
        target_propensities=target_propensities, logging_propensities=logging_propensities
    )
    estimate = ESTIMATORS[estimator](weights, _rewards(rewards, weights.size))
    interval = {"ci_method": ci_method, "confidence": confidence, "rng": rng, "n_bootstrap": n_bootstrap}
    return _interval(estimator, *estimate, n=weights.size, **interval)


def dr_estimate(
    *,
    rewards: np.ndarray,
    logging_propensities: np.ndarray,
    target_propensities: np.ndarray,
    predicted_rewards_logged: np.ndarray,
    predicted_value_target: np.ndarray,
    ci_method: CIMethod = "normal",
    confidence: float = 0.95,
    rng: np.random.Generator | None = None,
    n_bootstrap: int = 1000,
) -> PolicyValueEstimate:
    """Doubly robust: V̂ = mean_i [ q̂_i(π) + w_i·(r_i − q̂_i(a_i)) ].

    `predicted_rewards_logged[i]` = q̂(x_i, a_i), the reward model's prediction for the logged item;
    `predicted_value_target[i]` = q̂_i(π) = Σ_a π(a|x_i)·q̂(x_i, a), its expected prediction under the target
    (see `expected_model_reward`). Unbiased if either the propensities or the reward model are correct.
    """
    weights = importance_weights(
        target_propensities=target_propensities, logging_propensities=logging_propensities
    )
    n = weights.size
    logged = _rewards(predicted_rewards_logged, n)
    target_value = _rewards(predicted_value_target, n)
    terms = target_value + weights * (_rewards(rewards, n) - logged)
    interval = {"ci_method": ci_method, "confidence": confidence, "rng": rng, "n_bootstrap": n_bootstrap}
    return _interval("dr", *_mean_of_terms(terms), n=n, **interval)


def estimate_mean(name: str, terms: np.ndarray, *, confidence: float = 0.95) -> PolicyValueEstimate:
    """The mean of per-decision terms (e.g. paired differences) with a normal interval."""
    terms = np.asarray(terms, dtype=np.float64)
    return _interval(
        name,
        *_mean_of_terms(terms),
        n=terms.size,
        ci_method="normal",
        confidence=confidence,
        rng=None,
        n_bootstrap=0,
    )


def expected_model_reward(*, target_probabilities: np.ndarray, predicted_rewards: np.ndarray) -> np.ndarray:
    """q̂_i(π) = Σ_a π(a|x_i)·q̂(x_i, a) per decision, from (n, n_actions) probabilities and predictions."""
    probabilities = np.asarray(target_probabilities, dtype=np.float64)
    predictions = np.asarray(predicted_rewards, dtype=np.float64)
    if probabilities.shape != predictions.shape or probabilities.ndim != 2:
        raise ValueError(
            f"expected equal (n, n_actions) shapes, got {probabilities.shape}, {predictions.shape}"
        )
    if not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError("each row of target_probabilities must sum to 1")
    return (probabilities * predictions).sum(axis=1)


def examination_weights(k: int) -> np.ndarray:
    """θ_s = 1 / log2(s + 2) for slots s = 0..k−1: the position-based click model's examination assumption.

    The estimators below assume a click on slot s happens with probability θ_s·relevance(context, item),
    with θ of this shape (only its ratios between slots matter); the simulator's click model has it too.
    """
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


@dataclass(frozen=True)
class ExposureLog:
    """Logged slots for the position-based estimators, flat over slots, with each slot's slate number."""

    slate: np.ndarray
    """Index of the slate each slot belongs to (0..n_slates−1, slots of a slate contiguous)."""
    rewards: np.ndarray
    examination: np.ndarray
    """θ_s of each slot's position."""
    target_exposure: np.ndarray
    """e_target(a) = Σ_t θ_t·P_target(a in slot t) of each slot's logged item."""
    logging_exposure: np.ndarray
    """The same under the logging policy (positive: the item was served)."""

    def weights(self) -> np.ndarray:
        """w = e_target(a) / e_logging(a) per slot."""
        if (self.logging_exposure <= 0).any():
            raise ValueError("every logged item must have a positive exposure under the logging policy")
        return self.target_exposure / self.logging_exposure

    def per_slate(self, values: np.ndarray) -> np.ndarray:
        """Sum of per-slot `values` within each slate."""
        return np.bincount(self.slate, weights=values, minlength=int(self.slate.max()) + 1)


@dataclass(frozen=True)
class _LinearTerms:
    """Per-slate influence terms offset_j + Σ_s slope_s·r_s of an estimator (the rewards r enter linearly)."""

    offsets: np.ndarray
    slopes: np.ndarray


def _ratio(
    rewards_weight: np.ndarray, denominators: np.ndarray, scale: float, log: ExposureLog
) -> tuple[float, _LinearTerms]:
    """scale·Σ_j N_j / Σ_j D_j with N_j = Σ_s rewards_weight_s·r_s; the point and its influence terms."""
    numerators = log.per_slate(rewards_weight * log.rewards)
    ratio = float(numerators.sum() / denominators.sum())
    mean_denominator = float(denominators.mean())
    terms = _LinearTerms(
        offsets=-scale * ratio * denominators / mean_denominator,
        slopes=scale * rewards_weight / mean_denominator,
    )
    return scale * ratio, terms


def _interval_of(
    name: str,
    point: float,
    terms: _LinearTerms,
    log: ExposureLog,
    click_model: np.ndarray | None,
    confidence: float,
) -> PolicyValueEstimate:
    """A normal interval around `point` from the influence terms' spread over slates.

    The observed spread misses what rare clicks on heavily weighted items would add when none happened to
    be logged; with a click model μ of the logged slots, the standard error is the larger of the observed
    one and the one the model expects, Σ_j (E[term_j]² + Σ_s slope_s²·μ_s(1 − μ_s)) / n², given the
    logged items.
    """
    influence = terms.offsets + log.per_slate(terms.slopes * log.rewards)
    n = influence.size
    standard_error = float(np.std(influence, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    if click_model is not None and n > 1:
        expected = terms.offsets + log.per_slate(terms.slopes * click_model)
        variance = log.per_slate(terms.slopes**2 * click_model * (1.0 - click_model))
        standard_error = max(standard_error, float(np.sqrt((expected**2 + variance).sum()) / n))
    half_width = float(norm.ppf(0.5 + confidence / 2)) * standard_error
    return PolicyValueEstimate(
        point, point - half_width, point + half_width, standard_error, n, name, "normal"
    )


def exposure_estimates(
    log: ExposureLog,
    *,
    predicted_logged: np.ndarray | None = None,
    predicted_target_slates: np.ndarray | None = None,
    confidence: float = 0.95,
) -> tuple[dict[str, PolicyValueEstimate], PolicyValueEstimate]:
    """The target's clicks per slot under a position-based click model; (estimates, SNIPS lift over the log).

    With clicks P(click at slot s) = θ_s·ρ(a), the target's clicks per slate are Σ_a e_target(a)·ρ(a), and
    Σ_s r_s·w(a_s) with w = e_target / e_logging has that expectation under the logging policy, whatever the
    order of either policy's slates: a candidate that ranks the same items differently keeps moderate
    weights, where per-slot and prefix weights vanish (Li et al., "Offline evaluation of ranking policies
    with click models", KDD 2018, item-position model). Estimators, each a ratio over slates with a
    delta-method interval (slots of one slate are not independent), widened where a click model of the
    logged slots expects more spread than was observed (`_interval_of`):
    - `pbm_ips`: Σ r·w / Σ slots;
    - `pbm_snips`: self-normalised by Σ θ·w, whose expectation Σ_s θ_s per slate is known;
    - `pbm_dr` (with predictions): doubly robust with the reward model λ·θ_s·q(a), q the target's calibrated
      predictions and λ fitted on the other half of the slates; `predicted_target_slates` holds each slate's
      Σ_a e_target(a)·q(a).
    The lift is `pbm_snips` minus the logged clicks per slot, with a paired interval over slates. The click
    model behind the intervals is λ·θ_s·q(a) fitted on the whole log (needs `predicted_logged`).
    """
    weights = log.weights()
    ones = np.ones_like(weights)
    slots = log.per_slate(ones)
    clicks = log.per_slate(log.rewards)
    normaliser = log.per_slate(weights * log.examination)
    scale = float(log.per_slate(log.examination).sum() / slots.sum())
    click_model = None
    if predicted_logged is not None:
        expected = log.examination * predicted_logged
        overall = log.rewards.sum() / max(float(expected.sum()), 1e-12)
        click_model = np.clip(overall * expected, 0.0, 1.0)
    estimates: dict[str, PolicyValueEstimate] = {}
    point, terms = _ratio(weights, slots, 1.0, log)
    estimates["pbm_ips"] = _interval_of("pbm_ips", point, terms, log, click_model, confidence)
    point, snips_terms = _ratio(weights, normaliser, scale, log)
    estimates["pbm_snips"] = _interval_of("pbm_snips", point, snips_terms, log, click_model, confidence)
    if predicted_logged is not None and predicted_target_slates is not None:
        halves = np.arange(slots.size) % 2
        fitted = np.empty(slots.size)
        expected = log.examination * predicted_logged
        for half in (0, 1):
            rest = (halves != half)[log.slate] if slots.size > 1 else np.ones(log.slate.size, bool)
            fitted[halves == half] = log.rewards[rest].sum() / max(float(expected[rest].sum()), 1e-12)
        fixed = fitted * predicted_target_slates - log.per_slate(weights * fitted[log.slate] * expected)
        point = float((fixed + log.per_slate(weights * log.rewards)).sum() / slots.sum())
        mean_slots = float(slots.mean())
        dr_terms = _LinearTerms((fixed - point * slots) / mean_slots, weights / mean_slots)
        estimates["pbm_dr"] = _interval_of("pbm_dr", point, dr_terms, log, click_model, confidence)
    logged = float(clicks.sum() / slots.sum())
    mean_slots = float(slots.mean())
    lift_terms = _LinearTerms(
        offsets=snips_terms.offsets + logged * slots / mean_slots,
        slopes=snips_terms.slopes - ones / mean_slots,
    )
    point = estimates["pbm_snips"].estimate - logged
    lift = _interval_of("pbm_snips_lift", point, lift_terms, log, click_model, confidence)
    return estimates, lift
