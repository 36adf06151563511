"""Pure parts of the pipeline's simulate step and reuse keys: what is simulated, the gate value, the keys."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from explorec.config import compose
from explorec.errors import ExplorecError
from explorec.pipeline.cache import candidate_key, code_version, policy_key, simulation_key, training_key
from explorec.pipeline.registration import simulator_lift
from explorec.simulation.tracked import candidate_simulation


def _comparison(calibration: str, policy: str, control: str, low: float, high: float) -> dict:
    """One row of the simulator's comparisons table (expected clicks)."""
    middle = (low + high) / 2
    return {
        "calibration": calibration,
        "metric": "expected_clicks",
        "policy": policy,
        "control": control,
        "mean_difference": middle,
        "ci_low": low,
        "ci_high": high,
        "p_value": 0.01,
        "p_holm": 0.02,
        "n_replications": 5,
    }


def test_the_gate_value_is_the_smallest_lower_bound_against_greedy_online() -> None:
    table = pd.DataFrame(
        [
            _comparison("main", "linucb@1", "greedy_online", 0.012, 0.044),
            _comparison("sparse", "linucb@1", "greedy_online", -0.003, 0.037),
            _comparison("main", "linucb@1", "static", 0.5, 0.9),  # another control: not the gate's
            _comparison("main", "random", "greedy_online", -0.9, -0.5),  # another policy
        ]
    )
    metrics = simulator_lift(table, "linucb@1", "sim/lift_ci_low")
    assert metrics["sim/lift_ci_low"] == -0.003
    assert metrics["sim/main/lift_ci_low"] == 0.012
    assert metrics["sim/sparse/lift_ci_high"] == 0.037
    assert metrics["sim/main/lift"] == pytest.approx(0.028)


def test_a_nan_bound_is_not_skipped_and_a_missing_policy_is_an_error() -> None:
    table = pd.DataFrame(
        [
            _comparison("main", "mmr@0.5", "greedy_online", 0.2, 0.3),
            _comparison("sparse", "mmr@0.5", "greedy_online", float("nan"), float("nan")),
        ]
    )
    assert math.isnan(simulator_lift(table, "mmr@0.5", "sim/lift_ci_low")["sim/lift_ci_low"])
    with pytest.raises(ExplorecError, match=r"no comparison of thompson@0\.5"):
        simulator_lift(table, "thompson@0.5", "sim/lift_ci_low")
    with pytest.raises(ExplorecError, match=r"no comparison of mmr@0\.5"):
        simulator_lift(pd.DataFrame(), "mmr@0.5", "sim/lift_ci_low")  # a simulation without comparisons


def test_only_the_candidate_policy_is_simulated_with_its_own_knobs() -> None:
    linucb = compose(["policy=linucb", "policy.n_candidates=50"])
    settings, reason = candidate_simulation(linucb)
    assert reason == "" and settings is not None
    assert settings.policy_rates == {"linucb": [linucb.policy.exploration_rate]}
    assert settings.n_candidates == 50
    assert settings.ope_logging_policy == ""
    cfg = compose(["policy=epsilon_greedy", "policy.exploration_rate=0.3"])
    settings, _ = candidate_simulation(cfg)
    assert settings is not None and settings.policy_rates == {"epsilon_greedy": [0.3]}
    assert settings.n_replications == cfg.simulate.n_replications


def test_no_simulation_when_switched_off_or_the_policy_does_not_explore() -> None:
    off, reason = candidate_simulation(compose(["pipeline.simulate=false"]))
    assert off is None and "pipeline.simulate=false" in reason
    greedy, reason = candidate_simulation(compose(["policy=greedy"]))
    assert greedy is None and "does not explore" in reason


def test_training_key_ignores_what_cannot_change_the_model_and_sees_what_can() -> None:
    base = compose([])
    key = training_key(base)
    unrelated = [
        "gates.ndcg_at_10.threshold=0.5",
        "pipeline.force=true",
        "pipeline.simulate=false",
        "simulate.n_replications=2",
        "trainer.enable_progress_bar=false",
        "tune.n_trials=3",
        "policy.exploration_rate=0.2",
        "policy=thompson",
        "replay.visits=2",
    ]
    for override in unrelated:
        assert training_key(compose([override])) == key, override
    for override in ["model.embedding_dim=32", "trainer.max_epochs=2", "seed=1"]:
        assert training_key(compose([override])) != key, override
    assert policy_key(compose(["policy.exploration_rate=0.2"])) != policy_key(base)
    settings, _ = candidate_simulation(base)
    other, _ = candidate_simulation(compose(["simulate.n_replications=2"]))
    assert simulation_key(base, settings) != simulation_key(base, other)
    rate = compose(["policy.exploration_rate=0.5"])
    assert simulation_key(rate, candidate_simulation(rate)[0]) != simulation_key(base, settings)
    assert candidate_key("run-a", None) != candidate_key("run-a", "sim-b")
    assert candidate_key("run-a", None, "m-1") != candidate_key("run-a", None, "m-2")


def test_code_version_is_a_stable_hash_of_the_source() -> None:
    assert code_version() == code_version()
    assert code_version().startswith("src-") and len(code_version()) == 20
