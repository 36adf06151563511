"""The study: equal-cost reading of policy curves (worked by hand) and a tiny run with two recommenders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from explorec.config.simulation import SimulateConfig, StudyConfig
from explorec.simulation.environment import build_world
from explorec.simulation.recommender import stand_in_recommender
from explorec.simulation.study import (
    cost_curve,
    equal_cost_table,
    run_study,
    study_simulate_config,
    with_early_cost,
)
from tests.unit.simulation.conftest import N_ITEMS, N_USERS

STUDY = StudyConfig(
    encoders=["minilm", "none"],
    policies=["epsilon_greedy", "semantic_cluster"],
    exploration_rates=[0.3, 0.6],
    calibrations=["main"],
    n_replications=2,
    pool="test",
    deviation_levels=[0.1, 0.3, 0.9],
    early_cost_levels=[0.05],
)


def test_cost_curve_reads_the_polyline_in_cost_order_and_never_extrapolates() -> None:
    points = pd.DataFrame(
        {"exploration_rate": [0.0, 0.6, 0.3], "deviation": [0.0, 0.4, 0.2], "clicks": [10.0, 11.0, 12.0]}
    )
    values = cost_curve(points, axis="deviation", outcome="clicks", levels=np.array([0.1, 0.3, 0.5, -0.1]))
    np.testing.assert_allclose(values[:2], [11.0, 11.5])  # (10+12)/2; (12+11)/2
    assert np.isnan(values[2]) and np.isnan(values[3])


def test_early_cost_is_relative_to_the_same_encoders_greedy_online() -> None:
    frame = pd.DataFrame(
        {
            "encoder": ["a", "a", "b", "b"],
            "calibration": "main",
            "replication": 0,
            "policy": ["greedy_online", "x@0.1", "greedy_online", "x@0.1"],
            "ctr_early": [0.04, 0.03, 0.02, 0.021],
        }
    )
    np.testing.assert_allclose(with_early_cost(frame)["early_cost"], [0.0, 0.25, 0.0, -0.05])


def _curves(encoder: str, offset: float, replication: int) -> list[dict]:
    """greedy_online and epsilon_greedy at two rates; outcome = offset + replication + 10·δ."""
    rows = []
    for policy, rate, deviation in (("greedy_online", 0.0, 0.0), ("epsilon_greedy@0.3", 0.3, 0.2)):
        rows.append(
            {
                "encoder": encoder,
                "calibration": "main",
                "replication": replication,
                "policy": policy,
                "policy_name": "greedy" if rate == 0 else "epsilon_greedy",
                "exploration_rate": rate,
                "deviation": deviation,
                "early_cost": deviation / 2,
                "expected_clicks": offset + replication + 10 * deviation,
                "new_clusters_clicked": 1.0 + deviation,
                "hidden_recall": 0.1,
            }
        )
    return rows


def test_equal_cost_difference_is_paired_by_replication() -> None:
    rows = [row for r in range(3) for row in _curves("minilm", 10.0, r) + _curves("none", 9.0, r)]
    study = StudyConfig(
        policies=["epsilon_greedy"], deviation_levels=[0.1, 0.3], early_cost_levels=[0.05], n_replications=3
    )
    table = equal_cost_table(pd.DataFrame(rows), study)
    clicks = table[(table["outcome"] == "expected_clicks") & (table["axis"] == "deviation")].set_index(
        "level"
    )
    assert clicks.loc[0.1, "minilm"] == pytest.approx(10.0 + 1.0 + 1.0)  # mean replication 1, 10·0.1
    assert clicks.loc[0.1, "difference"] == pytest.approx(1.0)
    assert clicks.loc[0.1, "ci_low"] == pytest.approx(1.0) and clicks.loc[0.1, "ci_high"] == pytest.approx(
        1.0
    )
    assert np.isnan(clicks.loc[0.3, "difference"])  # δ 0.3 is beyond the largest δ reached (0.2)
    discovery = table[(table["outcome"] == "new_clusters_clicked") & (table["axis"] == "early_cost")]
    assert discovery["difference"].iloc[0] == pytest.approx(0.0)


def test_study_config_replaces_the_grid_and_switches_ope_off(small_config: SimulateConfig) -> None:
    cfg = study_simulate_config(small_config, STUDY)
    assert cfg.policy_rates == {"epsilon_greedy": [0.3, 0.6], "semantic_cluster": [0.3, 0.6]}
    assert [c.name for c in cfg.calibrations] == ["main"]
    assert (cfg.n_replications, cfg.ope_logging_policy) == (2, "")
    with pytest.raises(ValueError, match="match no"):
        study_simulate_config(small_config, StudyConfig(calibrations=["absent"]))


def test_study_on_a_tiny_world_answers_with_tables_plots_and_report(
    positives: pd.DataFrame, text_embeddings: np.ndarray, small_config: SimulateConfig, tmp_path: Path
) -> None:
    world = build_world(
        positives=positives, n_users=N_USERS, n_items=N_ITEMS, cfg=study_simulate_config(small_config, STUDY)
    )
    recommenders = {
        encoder: stand_in_recommender(
            training=world.training,
            n_users=N_USERS,
            n_items=N_ITEMS,
            users=world.pools.simulated,
            dimension=dimension,
        )
        for encoder, dimension in (("minilm", 8), ("none", 3))
    }
    result = run_study(
        world=world,
        recommenders=recommenders,
        text_embeddings=text_embeddings,
        simulate=small_config,
        study=STUDY,
        output_dir=tmp_path,
    )
    assert set(result.summary["encoder"]) == {"minilm", "none"}
    for encoder in ("minilm", "none"):
        policies = set(result.summary.loc[result.summary["encoder"] == encoder, "policy"])
        assert {"oracle", "static", "greedy_online", "random"} <= policies
        assert {"epsilon_greedy@0.3", "semantic_cluster@0.6"} <= policies
    assert {"offline_ndcg", "offline_ild", "early_cost"} <= set(result.summary.columns)
    assert set(result.equal_cost["policy"]) == {"epsilon_greedy", "semantic_cluster"}
    answer = result.answer["calibrations"]["main"]
    assert answer["uses_it_best"] in (None, "epsilon_greedy", "semantic_cluster")
    assert "**Answer (main).**" in result.markdown or "No policy reaches" in result.markdown
    assert all(path.is_file() for path in result.plots.values())
    assert {"reward_vs_discovery_main", "equal_cost_main", "offline_main"} <= set(result.plots)
