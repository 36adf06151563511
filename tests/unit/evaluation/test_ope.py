"""IPS, SNIPS and DR on a hand-worked log, a synthetic bandit with a known value, and Open Bandit data."""

from __future__ import annotations

from dataclasses import replace
from itertools import permutations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from explorec.evaluation.ope import (
    ExposureLog,
    deterministic_target_propensities,
    dr_estimate,
    estimate_policy_value,
    examination_weights,
    expected_model_reward,
    exposure_estimates,
    importance_weights,
    prefix_propensities,
)
from explorec.policies.simple import BoltzmannPolicy, EpsilonGreedyPolicy
from explorec.policies.slates import policy_exposure

# Synthetic bandit: 2 equally likely contexts, 3 actions, click probability CLICK[x, a]; uniform logging.
# Target: action 1 in context 0, action 2 in context 1 → true value 0.5·0.5 + 0.5·0.6 = 0.55.
CLICK = np.array([[0.1, 0.5, 0.3], [0.4, 0.2, 0.6]])
TARGET_ACTION = np.array([1, 2])
TRUE_VALUE = 0.55


def _logged_bandit(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """One log of n uniform-logging decisions with the target's propensities and the true reward model."""
    contexts = rng.integers(0, 2, size=n)
    actions = rng.integers(0, 3, size=n)
    rewards = (rng.random(n) < CLICK[contexts, actions]).astype(float)
    target_probabilities = np.eye(3)[TARGET_ACTION[contexts]]
    return {
        "rewards": rewards,
        "logging_propensities": np.full(n, 1 / 3),
        "target_propensities": deterministic_target_propensities(
            target_items=TARGET_ACTION[contexts], logged_items=actions
        ),
        "predicted_rewards_logged": CLICK[contexts, actions],
        "predicted_value_target": expected_model_reward(
            target_probabilities=target_probabilities, predicted_rewards=CLICK[contexts]
        ),
    }


def _without_model(log: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The log's arguments for IPS and SNIPS (no reward model)."""
    return {key: log[key] for key in ("rewards", "logging_propensities", "target_propensities")}


def test_hand_worked_log() -> None:
    # w = [1/0.5, 0/0.5, 1/0.25] = [2, 0, 4]; r = [1, 0, 1].
    # IPS = (2 + 0 + 4) / 3 = 2. SNIPS = 6 / 6 = 1.
    # DR with q̂(logged) = 0.5 and q̂(π) = 0.6: terms 0.6 + 2·0.5, 0.6 + 0, 0.6 + 4·0.5 = 1.6, 0.6, 2.6 → 1.6.
    log = {
        "rewards": np.array([1.0, 0.0, 1.0]),
        "logging_propensities": np.array([0.5, 0.5, 0.25]),
        "target_propensities": np.array([1.0, 0.0, 1.0]),
    }
    assert estimate_policy_value("ips", **log).estimate == pytest.approx(2.0)
    assert estimate_policy_value("snips", **log).estimate == pytest.approx(1.0)
    dr = dr_estimate(**log, predicted_rewards_logged=np.full(3, 0.5), predicted_value_target=np.full(3, 0.6))
    assert dr.estimate == pytest.approx(1.6)
    # Normal CI of IPS: terms [2, 0, 4], sample std 2 → SE 2/√3 = 1.1547; half width 1.96·1.1547 = 2.2632.
    ips = estimate_policy_value("ips", **log)
    assert ips.standard_error == pytest.approx(2 / np.sqrt(3))
    assert (ips.ci_low, ips.ci_high) == pytest.approx((2 - 2.2632, 2 + 2.2632), abs=1e-4)


def test_estimators_cover_the_true_value_on_one_log() -> None:
    log = _logged_bandit(np.random.default_rng(0), 6_000)
    for estimate in (
        estimate_policy_value("ips", **_without_model(log)),
        estimate_policy_value("snips", **_without_model(log)),
        dr_estimate(**log),
    ):
        assert estimate.contains(TRUE_VALUE), estimate
        assert estimate.ci_high - estimate.ci_low < 0.1  # informative, not trivially wide


def test_intervals_reach_their_coverage_and_dr_has_the_lowest_variance() -> None:
    rng = np.random.default_rng(1)
    estimates: dict[str, list[float]] = {"ips": [], "snips": [], "dr": []}
    covered: dict[str, int] = dict.fromkeys(estimates, 0)
    n_repetitions = 300
    for _ in range(n_repetitions):
        log = _logged_bandit(rng, 2_000)
        for result in (
            estimate_policy_value("ips", **_without_model(log)),
            estimate_policy_value("snips", **_without_model(log)),
            dr_estimate(**log),
        ):
            estimates[result.estimator].append(result.estimate)
            covered[result.estimator] += result.contains(TRUE_VALUE)
    for name in estimates:
        values = np.array(estimates[name])
        # Unbiased (up to SNIPS's O(1/n) bias): the mean of 300 estimates within 4 of its standard errors.
        assert abs(values.mean() - TRUE_VALUE) < 4 * values.std() / np.sqrt(n_repetitions), name
        # 95% intervals: coverage 285/300 expected; binomial SD 3.8 → accept 270..300.
        assert covered[name] >= 270, (name, covered[name])
    # With the true reward model DR only keeps the reward noise: its spread is well below IPS's.
    assert np.std(estimates["dr"]) < 0.8 * np.std(estimates["ips"])


def test_dr_with_a_zero_model_is_ips() -> None:
    log = _logged_bandit(np.random.default_rng(2), 500)
    zeros = np.zeros(500)
    dr = dr_estimate(**_without_model(log), predicted_rewards_logged=zeros, predicted_value_target=zeros)
    ips = estimate_policy_value("ips", **_without_model(log))
    assert dr.estimate == pytest.approx(ips.estimate)
    assert dr.standard_error == pytest.approx(ips.standard_error)


@pytest.mark.parametrize("estimator", ["ips", "snips"])
def test_bootstrap_interval_is_seeded_and_close_to_normal(estimator: str) -> None:
    log = _without_model(_logged_bandit(np.random.default_rng(3), 3_000))
    normal = estimate_policy_value(estimator, **log)
    boot = estimate_policy_value(
        estimator, **log, ci_method="bootstrap", rng=np.random.default_rng(4), n_bootstrap=500
    )
    again = estimate_policy_value(
        estimator, **log, ci_method="bootstrap", rng=np.random.default_rng(4), n_bootstrap=500
    )
    assert (boot.ci_low, boot.ci_high) == (again.ci_low, again.ci_high)
    assert boot.estimate == normal.estimate
    assert boot.standard_error == pytest.approx(normal.standard_error, rel=0.15)
    assert boot.ci_low < boot.estimate < boot.ci_high
    with pytest.raises(ValueError, match="needs a numpy Generator"):
        estimate_policy_value(estimator, **log, ci_method="bootstrap")


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError, match=r"logging propensities must lie in \(0, 1\]"):
        importance_weights(target_propensities=np.array([1.0]), logging_propensities=np.array([0.0]))
    with pytest.raises(ValueError, match="contain NaN"):
        importance_weights(target_propensities=np.array([np.nan]), logging_propensities=np.array([0.5]))
    with pytest.raises(ValueError, match="Σw > 0"):
        estimate_policy_value(
            "snips", rewards=np.ones(2), logging_propensities=np.full(2, 0.5), target_propensities=np.zeros(2)
        )
    with pytest.raises(ValueError, match="must sum to 1"):
        expected_model_reward(target_probabilities=np.array([[0.5, 0.4]]), predicted_rewards=np.ones((1, 2)))


@pytest.mark.realdata
def test_open_bandit_bts_value_from_uniform_random_logs(real_data_dir: Path) -> None:
    """Estimate Bernoulli TS's CTR on ZOZOTOWN from uniform-random logs; compare with its on-policy CTR.

    BTS does not use the user context, so its action distribution per position is estimated by the
    frequency of each item at each position in its own logs (averaged over the week it was updated).
    Random logs: propensity 1/80 per item and position. Clicks are sparse (38 and 42 per 10,000 rows),
    so only assert what the intervals support: the off-policy and on-policy CTRs agree within their
    combined 95% interval, and both are far below 5%.
    """
    folder = real_data_dir / "open-bandit-dataset-small"
    columns = ["item_id", "position", "click", "propensity_score"]
    random_log = pd.read_csv(folder / "random" / "all" / "all.csv", usecols=columns)
    bts_log = pd.read_csv(folder / "bts" / "all" / "all.csv", usecols=columns)
    assert len(random_log) == len(bts_log) == 10_000
    np.testing.assert_allclose(random_log["propensity_score"], 1 / 80)
    bts_action_probability = bts_log.groupby("position")["item_id"].value_counts(normalize=True)
    keys = pd.MultiIndex.from_frame(random_log[["position", "item_id"]])
    target = bts_action_probability.reindex(keys, fill_value=0.0).to_numpy()
    arguments = {
        "rewards": random_log["click"].to_numpy(dtype=float),
        "logging_propensities": random_log["propensity_score"].to_numpy(),
        "target_propensities": target,
    }
    on_policy_ctr = bts_log["click"].mean()  # 42 / 10,000 = 0.0042
    on_policy_se = np.sqrt(on_policy_ctr * (1 - on_policy_ctr) / len(bts_log))
    for estimate in (estimate_policy_value("ips", **arguments), estimate_policy_value("snips", **arguments)):
        combined_se = np.hypot(estimate.standard_error, on_policy_se)
        assert abs(estimate.estimate - on_policy_ctr) < 1.96 * combined_se, (estimate, on_policy_ctr)
        assert estimate.ci_low >= 0 and estimate.ci_high < 0.05


def _slate_value(policy, click: np.ndarray, position_weight: np.ndarray) -> float:
    """Exact clicks per slot of `policy` over equally likely user types: enumerate every ordered slate."""
    excluded = np.zeros(click.shape[1], dtype=bool)
    k = position_weight.size
    value = 0.0
    for scores in click:
        for slate in permutations(range(click.shape[1]), k):
            slot_probabilities = policy.slate_propensities(
                scores=scores, excluded=excluded, items=np.array(slate)
            )
            value += np.prod(slot_probabilities) * np.mean(position_weight * scores[list(slate)]) / len(click)
    return float(value)


def test_a_policys_slate_value_is_recovered_from_another_policys_logs() -> None:
    """Log ε-greedy slates; estimate Boltzmann's on-policy clicks per slot (prefix-propensity IPS, SNIPS)."""
    click = np.array([[0.30, 0.25, 0.20, 0.10, 0.05, 0.02], [0.02, 0.05, 0.10, 0.20, 0.25, 0.30]])
    position_weight = 1 / np.log2(np.arange(2, 5))  # θ_s for slots 0..2 (position-based clicks)
    logging, target = EpsilonGreedyPolicy(exploration_rate=0.6), BoltzmannPolicy(exploration_rate=0.5)
    true_value = _slate_value(target, click, position_weight)  # 0.1579
    logging_value = _slate_value(logging, click, position_weight)  # 0.1409
    rng = np.random.default_rng(5)
    n_slates = 6_000
    user_types = rng.integers(0, 2, size=n_slates)
    batch = logging.select_batch(
        scores=click[user_types], excluded=np.zeros((n_slates, 6), bool), k=3, rng=rng
    )
    rewards = rng.random((n_slates, 3)) < position_weight * np.take_along_axis(
        click[user_types], batch.items, 1
    )
    target_slots = np.array(
        [
            target.slate_propensities(scores=click[user_type], excluded=np.zeros(6, bool), items=items)
            for user_type, items in zip(user_types, batch.items, strict=True)
        ]
    )
    arguments = {
        "rewards": rewards.astype(float).ravel(),
        "logging_propensities": prefix_propensities(slot_propensities=batch.propensities).ravel(),
        "target_propensities": prefix_propensities(slot_propensities=target_slots).ravel(),
    }
    for estimate in (estimate_policy_value("ips", **arguments), estimate_policy_value("snips", **arguments)):
        assert estimate.contains(true_value), (estimate, true_value)
        # Tight enough to tell the target from the logger (SE ≈ 0.004 with 18,000 slot decisions).
        assert not estimate.contains(logging_value), (estimate, logging_value)


def _exposures(policy, scores: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """A policy's exposure of every item for one context, averaged over many of its own prefixes."""
    return policy_exposure(
        policy,
        scores=scores,
        excluded=np.zeros(scores.size, bool),
        state=None,
        examination=theta,
        rng=np.random.default_rng(9),
        draws=2000,
    )


def test_position_based_estimators_cover_a_reordering_candidate_where_prefix_weights_cannot() -> None:
    """ε-greedy logs of one ranking; the candidate ranks the same top items in reverse order.

    Under position-based clicks the candidate's value is Σ_a e(a)·ρ(a) / k; over 100 seeded logs of 400
    slates, the position-based intervals contain it in at least 90 (95% nominal); prefix SNIPS, whose
    weights vanish when the first slots differ, spreads several times wider and covers it far less often.
    """
    relevance = np.array([0.30, 0.25, 0.20, 0.15, 0.10, 0.05, 0.04, 0.03, 0.02, 0.01])
    theta = examination_weights(3)
    logging = EpsilonGreedyPolicy(exploration_rate=0.4)
    target = EpsilonGreedyPolicy(exploration_rate=0.2)
    logging_scores = -np.arange(10.0)
    target_scores = logging_scores.copy()
    target_scores[:3] = logging_scores[:3][::-1]  # items 0..2 in reverse
    e_logging = _exposures(logging, logging_scores, theta)
    e_target = _exposures(target, target_scores, theta)
    truth = float(e_target @ relevance / 3)
    excluded = np.zeros(10, bool)
    covered, prefix_estimates, pbm_ips = 0, [], []
    for seed in range(100):
        rng = np.random.default_rng(100 + seed)
        batch = logging.select_batch(
            scores=np.tile(logging_scores, (400, 1)), excluded=np.zeros((400, 10), bool), k=3, rng=rng
        )
        clicks = (rng.random((400, 3)) < theta * relevance[batch.items]).astype(float)
        log = ExposureLog(
            slate=np.repeat(np.arange(400), 3),
            rewards=clicks.ravel(),
            examination=np.tile(theta, 400),
            target_exposure=e_target[batch.items].ravel(),
            logging_exposure=e_logging[batch.items].ravel(),
        )
        estimates, lift = exposure_estimates(log)
        covered += estimates["pbm_snips"].contains(truth)
        pbm_ips.append(estimates["pbm_ips"].estimate)
        assert lift.estimate == pytest.approx(estimates["pbm_snips"].estimate - clicks.mean())
        target_slots = np.array(
            [
                target.slate_propensities(scores=target_scores, excluded=excluded, items=items)
                for items in batch.items
            ]
        )
        prefix_estimates.append(
            estimate_policy_value(
                "snips",
                rewards=clicks.ravel(),
                logging_propensities=prefix_propensities(slot_propensities=batch.propensities).ravel(),
                target_propensities=prefix_propensities(slot_propensities=target_slots).ravel(),
            )
        )
    assert covered >= 90, covered
    assert abs(np.mean(pbm_ips) - truth) < 0.05 * truth  # unbiased up to the seeds' spread
    assert sum(estimate.contains(truth) for estimate in prefix_estimates) < 80
    assert np.std([estimate.estimate for estimate in prefix_estimates]) > 4 * np.std(pbm_ips)


def test_position_based_estimators_of_the_logging_policy_itself_are_its_logged_clicks() -> None:
    """Target = logging: every weight is 1, so IPS and SNIPS equal the logged clicks and the lift is 0 ± 0."""
    rng = np.random.default_rng(3)
    clicks = (rng.random(40) < 0.3).astype(float)
    exposure = rng.uniform(0.1, 1.0, size=40)
    log = ExposureLog(
        slate=np.repeat(np.arange(10), 4),
        rewards=clicks,
        examination=np.tile(examination_weights(4), 10),
        target_exposure=exposure,
        logging_exposure=exposure,
    )
    estimates, lift = exposure_estimates(log)
    assert estimates["pbm_ips"].estimate == pytest.approx(clicks.mean())
    assert estimates["pbm_snips"].estimate == pytest.approx(clicks.mean())
    assert lift.estimate == pytest.approx(0.0, abs=1e-12)
    assert lift.ci_high - lift.ci_low == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="positive exposure"):
        exposure_estimates(replace(log, logging_exposure=np.zeros(40))).__len__()


def test_a_click_model_widens_the_interval_where_heavy_weights_drew_no_click() -> None:
    """One logged item the target exposes 200× more than the logger, shown in 5 slates and never clicked:
    the observed spread says almost nothing about it, the click model's expected spread does."""
    rng = np.random.default_rng(4)
    n_slates, k = 300, 3
    theta = examination_weights(k)
    heavy = np.zeros((n_slates, k), bool)
    heavy[:5, 2] = True
    relevance = np.where(heavy, 0.2, 0.1)
    clicks = (rng.random((n_slates, k)) < theta * relevance) & ~heavy
    target = np.where(heavy, 0.8, 0.4)
    logging_exposure = np.where(heavy, 0.004, 0.4)
    log = ExposureLog(
        slate=np.repeat(np.arange(n_slates), k),
        rewards=clicks.astype(float).ravel(),
        examination=np.tile(theta, n_slates),
        target_exposure=target.ravel(),
        logging_exposure=logging_exposure.ravel(),
    )
    observed, observed_lift = exposure_estimates(log)
    modelled, modelled_lift = exposure_estimates(log, predicted_logged=relevance.ravel())
    for name in ("pbm_ips", "pbm_snips"):
        assert modelled[name].estimate == pytest.approx(observed[name].estimate)
        assert modelled[name].standard_error > 3 * observed[name].standard_error
    assert modelled_lift.ci_low < observed_lift.ci_low
