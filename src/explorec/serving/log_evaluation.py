"""Off-policy evaluation of a candidate recommender on the service's logged traffic.

Each logged slot is one decision (the per-slot estimand of `explorec.evaluation.ope`): its reward is whether
the slot's item was clicked, its logging propensity the one the service logged, and its target propensity the
probability that the candidate's policy puts that item in that slot after the logged earlier slots, in the
logged request's context (the candidate's own stored history of the user plus the request's recent items and
feedback, replayed). The estimand is the candidate's clicks per slot. Estimators: IPS, SNIPS and doubly
robust (reward model: a logistic regression of the logged clicks on the candidate's calibrated prediction and
the slot's position, cross-fitted on the log; its direct-method term is the prediction for the item the
candidate's own sampled slate puts in the slot), each with a 95% normal interval, the effective sample
size (Σw)²/Σw² of the weights the lift is made of and the share of logged slots the candidate could have
chosen.
The lift over the logged traffic (what the `ope_lift` gate reads) is position-based SNIPS minus the logged
clicks per slot, with a paired interval (prefix SNIPS's when the logging versions cannot be replayed).

`prefix_ips`, `prefix_snips` and `prefix_dr` weigh each slot by the probability ratio of the slate's whole
prefix up to it (Π target / Π logging over slots 1..s): unbiased for the candidate's clicks per slot on its
*own* slates under a position-based click model, where the per-slot weights estimate the candidate's choices
after the *logged* earlier slots; the price is variance that grows with the slot's depth.

`pbm_ips`, `pbm_snips` and `pbm_dr` (`explorec.evaluation.ope.exposure_estimates`) weigh each slot by the
candidate's examination-weighted exposure of the logged item over the logging model's: both replayed in the
logged request's context, the logging model loaded by the impression's name and version and served with the
impression's exploration floor. Under a position-based click model they are unbiased whatever order either
model puts the items in, which is where retrained candidates differ from the champion most.

Slots logged with propensity 1 by a deterministic policy support only a deterministic candidate that makes
the same choices: the evaluation says how many slots it could use.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from explorec.evaluation.ope import (
    ExposureLog,
    PolicyValueEstimate,
    dr_estimate,
    estimate_mean,
    estimate_policy_value,
    examination_weights,
    exposure_estimates,
)
from explorec.serving.impressions import ImpressionLog
from explorec.serving.recommender import Recommender, Request, RequestView

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
class LoggingSource:
    """What served a logged slate: the registered model's name and version, and its exploration floor."""

    model_name: str
    model_version: str
    floor: float | None
    """Share of floor slates (None: not logged, in a log written before the floor was recorded)."""
    floor_pool: int | None


@dataclass(frozen=True)
class LoggedSlates:
    """Logged slates in one batch: requests, slot items, logging propensities, clicks and their source."""

    requests: list[Request]
    items: list[list[str]]
    propensities: list[np.ndarray]
    clicks: list[np.ndarray]
    sources: list[LoggingSource]


@dataclass
class LogEvaluation:
    """The candidate's estimated clicks per slot on the logged traffic, and the traffic's own."""

    n_impressions: int
    n_slots: int
    logged_value: PolicyValueEstimate
    estimates: dict[str, PolicyValueEstimate]
    lift: PolicyValueEstimate
    effective_sample_size: float
    """(Σw)²/Σw² of the weights the lift is made of."""
    support: float
    why_no_exposures: str = ""
    """Why the position-based estimators did not run ("" when they did: the lift is `pbm_snips`'s)."""

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
    batch = LoggedSlates([], [], [], [], [])
    current: str | None = None
    slots: list[dict[str, Any]] = []

    def close(rows: list[dict[str, Any]]) -> None:
        head = rows[0]
        batch.requests.append(_request(json.loads(head["request"])))
        batch.sources.append(
            LoggingSource(
                head["model_name"], str(head["model_version"]), head["exploration_floor"], head["floor_pool"]
            )
        )
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
                    batch = LoggedSlates([], [], [], [], [])
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


LoggingRecommenders = Callable[[str, str], Recommender]
"""(registered model name, version) → that version as a Recommender: what served the logged slates
(LookupError when it cannot be loaded: the evaluation then goes without the position-based estimators)."""
EXPOSURE_DRAWS = 16
"""Slates of each policy drawn per logged request to average its exposures over (`policy_exposure`)."""


@dataclass
class _Collected:
    """Per-slot arrays of the whole log, gathered batch by batch."""

    parts: dict[str, list[np.ndarray]] = field(
        default_factory=lambda: {
            name: [] for name in ("rewards", "logging", "target", "q_log", "q_own", "e_target", "e_logging")
        }
    )
    dm: list[float] = field(default_factory=list)
    n_impressions: int = 0
    exposures: bool = True
    why_no_exposures: str = ""

    def flat(self, name: str) -> np.ndarray:
        """One part as a flat array over every logged slot."""
        return np.concatenate(self.parts[name])


def _logged_exposures(
    candidate: Recommender,
    views: list[RequestView],
    batch: LoggedSlates,
    logging_recommender: LoggingRecommenders,
    *,
    rng: np.random.Generator,
    draws: int,
) -> tuple[list[np.ndarray], list[np.ndarray], list[float | None]]:
    """Per logged slate: the candidate's and the logging model's exposures of its items, and the DM term.

    `views`: the batch's requests as the candidate serves them (`Recommender.request_views`).
    """
    examination = examination_weights(max(len(items) for items in batch.items))
    own = candidate.logged_exposures(views, batch.items, examination=examination, rng=rng, draws=draws)
    logging: list[np.ndarray] = [np.empty(0)] * len(batch.requests)
    groups: dict[LoggingSource, list[int]] = {}
    for index, source in enumerate(batch.sources):
        groups.setdefault(source, []).append(index)
    for source, rows in groups.items():
        served_by = logging_recommender(source.model_name, source.model_version)
        served = served_by.logged_exposures(
            served_by.request_views([batch.requests[row] for row in rows]),
            [batch.items[row] for row in rows],
            examination=examination,
            rng=rng,
            draws=draws,
            floor=float(source.floor or 0.0),
            floor_pool=source.floor_pool,
        )
        for row, exposure in zip(rows, served, strict=True):
            logging[row] = exposure.of_logged
    return [e.of_logged for e in own], logging, [e.expected_prediction for e in own]


def evaluate_on_logs(
    candidate: Recommender,
    log: ImpressionLog,
    *,
    seed: int = 0,
    confidence: float = 0.95,
    logging_recommender: LoggingRecommenders | None = None,
    exposure_draws: int = EXPOSURE_DRAWS,
) -> LogEvaluation:
    """Estimate the candidate's clicks per slot on every slate in the log (ValueError when it is empty).

    With `logging_recommender` (how to load the versions that served the log), the position-based
    estimators run too and the lift is theirs; without it, or on a log that did not record its exploration
    floor, the lift is prefix SNIPS's and `LogEvaluation.why_no_exposures` says why.
    """
    rng = np.random.default_rng(seed)
    collected = _Collected()
    parts = collected.parts
    has_model = candidate.bundle.score_calibration is not None
    if logging_recommender is None:
        collected.exposures, collected.why_no_exposures = False, "no loader of the logging models given"
    for batch in logged_batches(log):
        views = candidate.request_views(batch.requests)
        decisions = candidate.logged_decisions(views, batch.items, rng)
        collected.n_impressions += len(decisions)
        for decision, clicks, logging in zip(decisions, batch.clicks, batch.propensities, strict=True):
            parts["rewards"].append(clicks)
            parts["logging"].append(logging)
            parts["target"].append(decision.propensities)
            if has_model and decision.logged_predictions is not None and decision.own_predictions is not None:
                parts["q_log"].append(decision.logged_predictions)
                parts["q_own"].append(decision.own_predictions)
        if collected.exposures and any(source.floor is None for source in batch.sources):
            collected.exposures = False
            collected.why_no_exposures = "the log holds slates written without their exploration floor"
        if collected.exposures and logging_recommender is not None:
            try:
                own, served, dm = _logged_exposures(
                    candidate, views, batch, logging_recommender, rng=rng, draws=exposure_draws
                )
            except LookupError as missing:  # a model that served the log is gone from the registry
                collected.exposures, collected.why_no_exposures = False, str(missing)
                continue
            parts["e_target"].extend(own)
            parts["e_logging"].extend(served)
            collected.dm.extend(float("nan") if value is None else value for value in dm)
    if collected.n_impressions == 0:
        raise ValueError(f"the impression log {log.location} holds no served slate yet")
    return _estimate(collected, has_model=has_model, confidence=confidence)


def _exposure_log(collected: _Collected) -> ExposureLog:
    """The position-based estimators' view of the collected slots."""
    parts = collected.parts
    return ExposureLog(
        slate=np.concatenate([np.full(r.size, index) for index, r in enumerate(parts["rewards"])]),
        rewards=collected.flat("rewards"),
        examination=np.concatenate([examination_weights(r.size) for r in parts["rewards"]]),
        target_exposure=collected.flat("e_target"),
        logging_exposure=collected.flat("e_logging"),
    )


def _estimate(collected: _Collected, *, has_model: bool, confidence: float) -> LogEvaluation:
    """Every estimator on the collected slots, the lift, the effective sample size and the support."""
    parts = collected.parts
    rewards, logging, target = (collected.flat(name) for name in ("rewards", "logging", "target"))
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
    weights = prefixes["target_propensities"] / prefixes["logging_propensities"]
    lift = snips_lift(weights, rewards, confidence=confidence)
    if collected.exposures:
        unexposed = int((collected.flat("e_logging") <= 0).sum())
        if unexposed:
            collected.exposures = False
            collected.why_no_exposures = (
                f"{unexposed} logged slots have no exposure under the replayed logging model (items it does "
                "not know, or a replay that differs from what was served)"
            )
    if collected.exposures:
        exposure_log = _exposure_log(collected)
        dm = np.asarray(collected.dm)
        with_model = has_model and bool(np.isfinite(dm).all())
        position_based, lift = exposure_estimates(
            exposure_log,
            predicted_logged=collected.flat("q_log") if with_model else None,
            predicted_target_slates=dm if with_model else None,
            confidence=confidence,
        )
        estimates.update(position_based)
        weights = exposure_log.weights()
    return LogEvaluation(
        n_impressions=collected.n_impressions,
        n_slots=int(rewards.size),
        logged_value=estimate_mean("logged", rewards, confidence=confidence),
        estimates=estimates,
        lift=lift,
        effective_sample_size=float(weights.sum() ** 2 / max(float((weights**2).sum()), 1e-300)),
        support=float(np.mean(target > 0)),
        why_no_exposures=collected.why_no_exposures,
    )
