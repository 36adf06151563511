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
    agreement,
    cost_curve,
    equal_cost_table,
    matched_rate_table,
    run_study,
    rung_table,
    study_simulate_config,
    with_early_cost,
)
from explorec.simulation.study_cells import POOLED, StudyCell
from tests.unit.simulation.conftest import N_ITEMS, N_USERS

STUDY = StudyConfig(
    encoders=["none", "minilm"],
    worlds=["static", "churn"],
    ground_truths=["ease", "ials"],
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
            "world": "static",
            "ground_truth": "ease",
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
                "world": "static",
                "ground_truth": "ease",
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
        encoders=["none", "minilm"],
        policies=["epsilon_greedy"],
        deviation_levels=[0.1, 0.3],
        early_cost_levels=[0.05],
        n_replications=3,
    )
    table = equal_cost_table(pd.DataFrame(rows), study)
    assert set(zip(table["lower"], table["upper"], strict=True)) == {("none", "minilm")}
    clicks = table[(table["outcome"] == "expected_clicks") & (table["axis"] == "deviation")].set_index(
        "level"
    )
    assert clicks.loc[0.1, "upper_value"] == pytest.approx(10.0 + 1.0 + 1.0)  # mean replication 1, 10·0.1
    assert clicks.loc[0.1, "lower_value"] == pytest.approx(9.0 + 1.0 + 1.0)
    assert clicks.loc[0.1, "difference"] == pytest.approx(1.0)
    assert clicks.loc[0.1, "ci_low"] == pytest.approx(1.0) and clicks.loc[0.1, "ci_high"] == pytest.approx(
        1.0
    )
    assert np.isnan(clicks.loc[0.3, "difference"])  # δ 0.3 is beyond the largest δ reached (0.2)
    discovery = table[(table["outcome"] == "new_clusters_clicked") & (table["axis"] == "early_cost")]
    assert discovery["difference"].iloc[0] == pytest.approx(0.0)


def test_a_ladder_compares_each_rung_with_the_one_below_and_pools_policies_per_replication() -> None:
    offsets = {"none": 9.0, "minilm": 10.0, "mpnet": 10.5}
    rows = [
        row for r in range(3) for encoder, offset in offsets.items() for row in _curves(encoder, offset, r)
    ]
    study = StudyConfig(
        encoders=["none", "minilm", "mpnet"],
        policies=["epsilon_greedy"],
        deviation_levels=[0.1, 0.3],
        early_cost_levels=[0.05],
        n_replications=3,
    )
    per_replication = pd.DataFrame(rows)
    matched = matched_rate_table(per_replication, study)
    rungs = rung_table(per_replication, matched, study)
    pooled = rungs[(rungs["comparison"] == POOLED) & (rungs["outcome"] == "expected_clicks")]
    assert list(zip(pooled["lower"], pooled["upper"], strict=True)) == [
        ("none", "minilm"),
        ("minilm", "mpnet"),
    ]
    np.testing.assert_allclose(pooled["difference"], [1.0, 0.5])  # only δ 0.1 is reached by both
    assert set(pooled["n_points"]) == {1}
    greedy = rungs[(rungs["comparison"] == "greedy_online") & (rungs["outcome"] == "expected_clicks")]
    np.testing.assert_allclose(greedy["difference"], [1.0, 0.5])
    claims = agreement(rungs)
    clicks = claims[claims["outcome"] == "expected_clicks"].set_index("upper")["claim"]
    assert clicks.to_dict() == {"minilm": "higher", "mpnet": "higher"}
    discovery = claims[claims["outcome"] == "new_clusters_clicked"]
    assert set(discovery["claim"]) == {"no claim"}  # zero difference: no interval excludes 0


def test_a_claim_needs_every_ground_truth_to_agree() -> None:
    base = {"world": "static", "calibration": "main", "lower": "none", "upper": "minilm"}
    rows = [
        {
            **base,
            "comparison": POOLED,
            "outcome": "expected_clicks",
            "ground_truth": truth,
            "ci_low": low,
            "ci_high": high,
        }
        for truth, low, high in (
            ("ease", 0.1, 0.3),
            ("ials", 0.05, 0.2),
            ("ease_popularity_dampened", -0.1, 0.2),
        )
    ]
    assert agreement(pd.DataFrame(rows))["claim"].tolist() == ["no claim"]
    rows[2].update(ci_low=0.01)
    assert agreement(pd.DataFrame(rows))["claim"].tolist() == ["higher"]


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
    worlds = {
        (world, truth): build_world(
            positives=positives,
            n_users=N_USERS,
            n_items=N_ITEMS,
            cfg=study_simulate_config(small_config, STUDY, StudyCell(world, truth, "", STUDY.pool)),
            items_with_text=np.arange(N_ITEMS) if world == "churn" else None,
        )
        for world in STUDY.worlds
        for truth in STUDY.ground_truths
    }
    recommenders = {
        (encoder, world): stand_in_recommender(
            training=worlds[(world, "ease")].training,
            n_users=N_USERS,
            n_items=N_ITEMS,
            users=worlds[(world, "ease")].pools.simulated,
            dimension=dimension,
        )
        for encoder, dimension in (("minilm", 8), ("none", 3))
        for world in STUDY.worlds
    }
    result = run_study(
        worlds=worlds,
        recommenders=recommenders,
        text_embeddings=text_embeddings,
        simulate=small_config,
        study=STUDY,
        output_dir=tmp_path,
    )
    cells = result.summary[["world", "ground_truth", "encoder"]].drop_duplicates()
    assert len(cells) == 2 * 2 * 2
    for _, cell in cells.iterrows():
        rows = result.summary[
            (result.summary["world"] == cell["world"])
            & (result.summary["ground_truth"] == cell["ground_truth"])
            & (result.summary["encoder"] == cell["encoder"])
        ]
        assert {"oracle", "static", "greedy_online", "random"} <= set(rows["policy"])
        assert {"epsilon_greedy@0.3", "semantic_cluster@0.6"} <= set(rows["policy"])
    oracle = result.summary[result.summary["policy"] == "oracle"]
    np.testing.assert_allclose(oracle["discovery_ratio_vs_oracle"], 1.0)
    churn = result.summary[result.summary["world"] == "churn"]
    assert churn["new_item_expected_clicks"].notna().all()
    assert result.summary.loc[result.summary["world"] == "static", "new_item_expected_clicks"].isna().all()
    assert {"offline_ndcg", "offline_ild", "early_cost"} <= set(result.summary.columns)
    assert set(result.equal_cost["policy"]) == {"epsilon_greedy", "semantic_cluster"}
    assert "new_item_expected_clicks" in set(result.rungs.loc[result.rungs["world"] == "churn", "outcome"])
    assert set(result.rungs["comparison"]) == {POOLED, "greedy_online", "static", "random", "oracle"}
    # The oracle and random do not read the towers: the rung changes nothing for them.
    untouched = result.rungs[result.rungs["comparison"].isin(["oracle", "random"])]
    np.testing.assert_allclose(untouched["difference"].fillna(0.0), 0.0, atol=1e-12)
    goal = result.answer["goal"]
    assert goal["chosen"]["pool"] == "tune" and goal["chosen"]["encoder"] == "minilm"
    assert set(result.selection["world"]) == {"churn"} and set(result.selection["encoder"]) == {"minilm"}
    assert {row["ground_truth"] for row in goal["per_ground_truth"]} == {"ease", "ials"}
    assert isinstance(goal["met"], bool)
    shares = result.curves.loc[result.curves["world"] == "churn", "new_items_clicked_share"]
    assert shares.between(0, 1).all()
    assert "## Answer: static world" in result.markdown and "## Answer: churn world" in result.markdown
    assert "## Goal (churn world)" in result.markdown
    assert all(path.is_file() for path in result.plots.values())
    assert {"frontier_main", "new_item_first_clicks_main", "equal_cost_churn_ials_main"} <= set(result.plots)
