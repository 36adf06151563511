"""The study flow on a tiny synthetic world: two rungs × two worlds × two truths, one MLflow run."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from flows.study import encoder_overrides, study_flow
from tests.flows.test_simulate_flow import TINY_TOWERS

TINY_STUDY = [
    *[item for item in TINY_TOWERS if not item.startswith("simulate.policy_rates")],
    "study.worlds=[static,churn]",
    "study.ground_truths=[ease,ials]",
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
    assert {
        "study.md",
        "summary.csv",
        "equal_cost.csv",
        "rungs.csv",
        "agreement.csv",
        "answer.json",
    } <= artifacts
    assert {
        "frontier_main.png",
        "new_item_first_clicks_main.png",
        "equal_cost_churn_ials_main.png",
    } <= artifacts
    fits = summary["recommender_fit"]
    assert set(fits) == {"none/static", "minilm/static", "none/churn", "minilm/churn"}
    assert len({fit["cache_key"] for fit in fits.values()}) == 4  # one fit per rung and world
    answer = summary["answer"]
    assert set(answer["worlds"]) == {"static", "churn"} and answer["pairs"] == [["none", "minilm"]]
    assert answer["goal"]["chosen"]["pool"] == "tune"
    assert run.data.tags["study.goal.met"] in ("true", "false")
    assert "# Study" in summary["markdown"] and "two_tower[none]" in summary["markdown"]
    assert run.data.metrics["time/total_s"] > 0
    again = study_flow(overrides=TINY_STUDY)
    assert all(fit["cache_hit"] for fit in again["recommender_fit"].values())
