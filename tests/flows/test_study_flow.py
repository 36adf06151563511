"""The study flow on a tiny synthetic world: two encoders' towers, one MLflow run (tables, plots, report)."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from flows.study import encoder_overrides, study_flow
from tests.flows.test_simulate_flow import TINY_TOWERS

TINY_STUDY = [
    *[item for item in TINY_TOWERS if not item.startswith("simulate.policy_rates")],
    "study.policies=[epsilon_greedy,semantic_cluster]",
    "study.exploration_rates=[0.3,0.6]",
    "study.n_replications=2",
    "study.deviation_levels=[0.1,0.3]",
    "study.early_cost_levels=[0.05]",
]


def test_encoder_overrides_replace_the_encoder_choice() -> None:
    assert encoder_overrides(["encoder=minilm", "seed=1"], "none") == ["seed=1", "encoder=none"]


def test_study_flow_writes_one_run_with_tables_plots_and_the_answer() -> None:
    summary = study_flow(overrides=TINY_STUDY)
    client = MlflowClient(summary["tracking_uri"])
    run = client.get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    artifacts = {item.path for item in client.list_artifacts(summary["run_id"])}
    assert {"study.md", "summary.csv", "equal_cost.csv", "matched_rate.csv", "answer.json"} <= artifacts
    assert {"reward_vs_discovery_main.png", "equal_cost_main.png", "offline_main.png"} <= artifacts
    fits = summary["recommender_fit"]
    assert set(fits) == {"minilm", "none"}
    assert fits["minilm"]["cache_key"] != fits["none"]["cache_key"]
    assert "main" in summary["answer"]["calibrations"]
    assert "# Study" in summary["markdown"] and "two_tower[none]" in summary["markdown"]
    assert run.data.metrics["time/total_s"] > 0
    again = study_flow(overrides=TINY_STUDY)
    assert all(fit["cache_hit"] for fit in again["recommender_fit"].values())
