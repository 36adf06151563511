"""Off-policy evaluation of a candidate recommender on the service's logged traffic.

Each logged slot is one decision (the per-slot estimand of `explorec.evaluation.ope`): its reward is whether
the slot's item was clicked, its logging propensity the one the service logged, and its target propensity the
probability that the candidate's policy puts that item in that slot after the logged earlier slots, in the
logged request's context (the candidate's own stored history of the user plus the request's recent items and
feedback, replayed). The estimand is the candidate's clicks per slot. Estimators: IPS, SNIPS and doubly
robust (reward model: a logistic regression of the logged clicks on the candidate's calibrated prediction and
the slot's position, cross-fitted on the log; its direct-method term is the prediction for the item the
candidate's own sampled slate puts in the slot), each with a 95% normal interval, the effective sample
size (Σw)²/Σw² of the prefix weights below and the share of logged slots the candidate could have chosen.
The lift over the logged traffic (what the `ope_lift` gate reads) is prefix SNIPS minus the logged clicks per
slot, with a paired interval: of the estimators, the one whose intervals covered the candidates' simulated
values in `explorec loop` (docs/results.md, "The loop").

`prefix_ips`, `prefix_snips` and `prefix_dr` weigh each slot by the probability ratio of the slate's whole
prefix up to it (Π target / Π logging over slots 1..s): unbiased for the candidate's clicks per slot on its
*own* slates under a position-based click model, where the per-slot weights estimate the candidate's choices
after the *logged* earlier slots; the price is variance that grows with the slot's depth.

Slots logged with propensity 1 by a deterministic policy support only a deterministic candidate that makes
the same choices: the evaluation says how many slots it could use.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from explorec.evaluation.ope import PolicyValueEstimate, dr_estimate, estimate_mean, estimate_policy_value
from explorec.serving.impressions import ImpressionLog
from explorec.serving.recommender import Recommender, Request

BATCH_IMPRESSIONS = 512
"""Logged slates replayed at once (one batched user-tower pass)."""
REWARD_MODEL_FOLDS = 2
"""Folds of slates that cross-fit doubly robust's reward model on the log (each predicted by the others)."""


def _slot_features(predictions: np.ndarray) -> np.ndarray:
    """Reward-model features of one slate's slots: logit of the candidate's calibrated prediction, log θ_k."""
    clipped = np.clip(predictions, 1e-6, 1 - 1e-6)
    position = -np.log(np.log2(np.arange(predictions.size) + 2.0))
    return np.column_stack([np.log(clipped / (1 - clipped)), position])


def logged_reward_model(
    *, rewards: np.ndarray, logged: list[np.ndarray], own: list[np.ndarray], folds: int
) -> tuple[np.ndarray, np.ndarray]:
    """Click probabilities of the logged items and of the candidate's own items, per slot, fitted on the log.

    A logistic regression of the logged clicks on the candidate's calibrated prediction (logit) and the
    slot's position weight, cross-fitted: the slates of each fold are predicted by a model of the others.
    The calibration the candidate was packaged with predicts held-out interactions, not this traffic's clicks.
    """
    from scipy.special import expit

    from explorec.evaluation.statistics import fit_logistic_regression

    fold_of = np.concatenate([np.full(len(p), index % folds) for index, p in enumerate(logged)])
    features_logged = np.vstack([_slot_features(p) for p in logged])
    features_own = np.vstack([_slot_features(p) for p in own])
    q_log, q_own = np.empty(fold_of.size), np.empty(fold_of.size)
    for fold in range(folds):
        rest = fold_of != fold
        if not rest.any() or rewards[rest].min() == rewards[rest].max():
            rest = np.ones_like(rest)  # too few slates (or no click) to hold any out: fit on all
        weights = fit_logistic_regression(features=features_logged[rest], target=rewards[rest])
        mine = fold_of == fold
        q_log[mine] = expit(features_logged[mine] @ weights[:-1] + weights[-1])
        q_own[mine] = expit(features_own[mine] @ weights[:-1] + weights[-1])
    return q_log, q_own


@dataclass(frozen=True)
class LoggedSlates:
    """Logged slates in one batch: requests, slot items, logging propensities and clicks [n, k]."""

    requests: list[Request]
    items: list[list[str]]
    propensities: list[np.ndarray]
    clicks: list[np.ndarray]


@dataclass
class LogEvaluation:
    """The candidate's estimated clicks per slot on the logged traffic, and the traffic's own."""

    n_impressions: int
    n_slots: int
    logged_value: PolicyValueEstimate
    estimates: dict[str, PolicyValueEstimate]
    lift: PolicyValueEstimate
    effective_sample_size: float
    support: float

    def metrics(self) -> dict[str, float]:
        """Flat metrics for MLflow: `ope/<estimator>`, its interval, ESS, support and the lift."""
        values = {
            "ope/n_impressions": float(self.n_impressions),
            "ope/n_slots": float(self.n_slots),
            "ope/logged_ctr": self.logged_value.estimate,
            "ope/effective_sample_size": self.effective_sample_size,
            "ope/support": self.support,
        }
        for name, estimate in {**self.estimates, "lift": self.lift}.items():
            values[f"ope/{name}"] = estimate.estimate
            values[f"ope/{name}_ci_low"] = estimate.ci_low
            values[f"ope/{name}_ci_high"] = estimate.ci_high
        return values


def _request(fields: dict[str, Any]) -> Request:
    """A logged request back as a `Request` (lists as tuples)."""
    values = dict(fields)
    for name in ("recent_item_ids", "shown_item_ids", "clicked_item_ids"):
        if values.get(name) is not None:
            values[name] = tuple(values[name])
    return Request(**values)


def logged_batches(log: ImpressionLog, batch_size: int = BATCH_IMPRESSIONS) -> Iterator[LoggedSlates]:
    """Yield the log's slates in batches of about `batch_size` impressions (streamed, oldest first)."""
    batch = LoggedSlates([], [], [], [])
    current: str | None = None
    slots: list[dict[str, Any]] = []

    def close(rows: list[dict[str, Any]]) -> None:
        batch.requests.append(_request(json.loads(rows[0]["request"])))
        batch.items.append([row["item_id"] for row in rows])
        batch.propensities.append(np.asarray([row["propensity"] for row in rows], dtype=np.float64))
        batch.clicks.append(np.asarray([bool(row["clicked"]) for row in rows], dtype=np.float64))

    for rows in log.logged_slots():
        for row in rows:
            if row["impression_id"] != current and slots:
                close(slots)
                slots = []
                if len(batch.requests) >= batch_size:
                    yield batch
                    batch = LoggedSlates([], [], [], [])
            current = row["impression_id"]
            slots.append(row)
    if slots:
        close(slots)
    if batch.requests:
        yield batch


def snips_lift(weights: np.ndarray, rewards: np.ndarray, *, confidence: float = 0.95) -> PolicyValueEstimate:
    """Candidate − logged clicks per slot: self-normalised IPS minus the logged mean, with a paired interval.

    The interval comes from the pair's linearisation: per slot w·(r − V̂)/w̄ − (r − r̄), whose mean is zero
    and whose spread is that of the difference (delta method for the ratio estimator).
    """
    mean_weight = float(weights.mean())
    if mean_weight <= 0:
        raise ValueError("no logged slot has a positive weight under the candidate")
    value = float((weights * rewards).sum() / weights.sum())
    logged = float(rewards.mean())
    terms = weights * (rewards - value) / mean_weight - (rewards - logged)
    spread = estimate_mean("snips_lift", terms, confidence=confidence)
    return dataclasses.replace(
        spread,
        estimate=value - logged,
        ci_low=value - logged + spread.ci_low,
        ci_high=value - logged + spread.ci_high,
    )


def evaluate_on_logs(
    candidate: Recommender, log: ImpressionLog, *, seed: int = 0, confidence: float = 0.95
) -> LogEvaluation:
    """Estimate the candidate's clicks per slot on every slate in the log (ValueError when it is empty)."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {
        name: [] for name in ("rewards", "logging", "target", "q_log", "q_own")
    }
    n_impressions = 0
    has_model = candidate.bundle.score_calibration is not None
    for batch in logged_batches(log):
        decisions = candidate.logged_decisions(batch.requests, batch.items, rng)
        n_impressions += len(decisions)
        for decision, clicks, logging in zip(decisions, batch.clicks, batch.propensities, strict=True):
            parts["rewards"].append(clicks)
            parts["logging"].append(logging)
            parts["target"].append(decision.propensities)
            if has_model and decision.logged_predictions is not None and decision.own_predictions is not None:
                parts["q_log"].append(decision.logged_predictions)
                parts["q_own"].append(decision.own_predictions)
    if n_impressions == 0:
        raise ValueError(f"the impression log {log.location} holds no served slate yet")
    rewards, logging, target = (np.concatenate(parts[name]) for name in ("rewards", "logging", "target"))
    if not (target > 0).any():
        raise ValueError(
            f"the candidate could not have chosen any of the {rewards.size} logged slots (no support): the "
            "traffic was served deterministically and the candidate chooses otherwise; serve with an "
            "exploration floor so that logs support other policies"
        )
    probabilities = {"rewards": rewards, "logging_propensities": logging, "target_propensities": target}
    estimates = {
        name: estimate_policy_value(name, **probabilities, confidence=confidence) for name in ("ips", "snips")
    }
    prefixes = {  # probability of the slate's first s+1 items: unbiased for the candidate's own slates
        "rewards": rewards,
        "logging_propensities": np.concatenate([np.cumprod(p) for p in parts["logging"]]),
        "target_propensities": np.concatenate([np.cumprod(p) for p in parts["target"]]),
    }
    for name in ("ips", "snips"):
        estimates[f"prefix_{name}"] = estimate_policy_value(name, **prefixes, confidence=confidence)
    if has_model:
        q_log, q_own = logged_reward_model(
            rewards=rewards, logged=parts["q_log"], own=parts["q_own"], folds=REWARD_MODEL_FOLDS
        )
        for name, probabilities_of in (("dr", probabilities), ("prefix_dr", prefixes)):
            estimate = dr_estimate(
                **probabilities_of,
                predicted_rewards_logged=q_log,
                predicted_value_target=q_own,
                confidence=confidence,
            )
            estimates[name] = dataclasses.replace(estimate, estimator=name)
    logged_value = estimate_mean("logged", rewards, confidence=confidence)
    weights = prefixes["target_propensities"] / prefixes["logging_propensities"]
    return LogEvaluation(
        n_impressions=n_impressions,
        n_slots=int(rewards.size),
        logged_value=logged_value,
        estimates=estimates,
        lift=snips_lift(weights, rewards, confidence=confidence),
        effective_sample_size=float(weights.sum() ** 2 / max(float((weights**2).sum()), 1e-300)),
        support=float(np.mean(target > 0)),
    )
