"""The simulate flow on a tiny synthetic world: one MLflow run with the tables, plots and summary."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from flows.simulate import simulate_flow

TINY_WORLD = [
    "data=synthetic",
    "data.synthetic.n_users=80",
    "data.synthetic.n_items=60",
    "data.synthetic.n_interactions=2400",
    "encoder=minilm",
    "simulate.min_user_positives=8",
    "simulate.tune_users=10",
    "simulate.test_users=20",
    "simulate.n_visits=4",
    "simulate.slate_size=5",
    "simulate.n_replications=2",
    "simulate.n_candidates=20",
    "simulate.n_text_clusters=4",
    "simulate.recommender=pure_svd",
    "simulate.stand_in_dimension=8",
    "simulate.policy_rates={epsilon_greedy:[0.3],linucb:[1.0]}",
    "simulate.ope_logging_policy=epsilon_greedy@0.3",
    "simulate.ope_target_policies=[greedy_online]",
    "simulate.calibrations=[{name:main,mean_click_probability:0.1,top10_click_probability:0.2}]",
]


def test_simulate_flow_logs_tables_plots_and_summary() -> None:
    summary = simulate_flow(overrides=TINY_WORLD)
    client = MlflowClient(summary["tracking_uri"])
    run = client.get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    artifacts = {item.path for item in client.list_artifacts(summary["run_id"])}
    assert {"summary.csv", "comparisons.csv", "summary.md"} <= artifacts
    assert {"lift_intervals.png", "tradeoff_main.png"} <= artifacts  # the lift's 95% intervals, the trade-off
    for baseline in ("oracle", "static", "greedy_online", "random"):
        assert baseline in summary["markdown"]
    assert summary["world"]["n_test_users"] == 20


TINY_TOWERS = [
    *[item for item in TINY_WORLD if not item.startswith("simulate.recommender=")],
    "simulate.recommender=two_tower",
    "simulate.recommender_max_epochs=1",
    "model.embedding_dim=8",
    "model.history_length=5",
    "trainer.batch_size=16",
    "trainer.enable_progress_bar=false",
]


def test_simulate_flow_with_the_towers_fits_once_then_reads_the_cache() -> None:
    first = simulate_flow(overrides=TINY_TOWERS)
    assert first["world"]["recommender"] == "two_tower[minilm]"
    fit = first["world"]["recommender_fit"]
    assert fit["cache_hit"] is False and fit["epochs_run"] <= 1
    client = MlflowClient(first["tracking_uri"])
    metrics = client.get_run(first["run_id"]).data.metrics
    assert metrics["recommender/cache_hit"] == 0.0
    assert "validation NDCG@10" in first["markdown"]
    second = simulate_flow(overrides=TINY_TOWERS)
    assert second["world"]["recommender_fit"]["cache_hit"] is True
    assert second["world"]["recommender_fit"]["cache_key"] == fit["cache_key"]
    assert client.get_run(second["run_id"]).data.metrics["recommender/cache_hit"] == 1.0
