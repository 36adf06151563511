"""Train and benchmark flows on a tiny synthetic data set, tracked into a temporary MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import pytest
from mlflow.tracking import MlflowClient
from prefect.artifacts import Artifact

from explorec.cli import main
from flows.benchmark import benchmark_flow
from flows.train import train_flow

from .conftest import TINY_SYNTHETIC

TINY = [*TINY_SYNTHETIC, "model.embedding_dim=16", "trainer.max_epochs=2"]


def test_train_flow_logs_a_complete_mlflow_run(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPLOREC_PREFECT_UI_URL", "http://127.0.0.1:4999")  # as `explorec` commands set them
    monkeypatch.setenv("EXPLOREC_MLFLOW_UI_URL", "http://127.0.0.1:5999")
    state = train_flow(overrides=TINY, return_state=True)
    summary = state.result()
    client = MlflowClient(summary["tracking_uri"])
    run = client.get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    # the MLflow run names its Prefect flow run, and the flow run's artifact links the MLflow run page
    flow_run_id = str(state.state_details.flow_run_id)
    assert run.data.tags["explorec.prefect_flow_run_id"] == flow_run_id
    assert (
        run.data.tags["explorec.prefect_flow_run_url"] == f"http://127.0.0.1:4999/runs/flow-run/{flow_run_id}"
    )
    artifact = Artifact.get("train-summary")
    assert artifact is not None and str(artifact.flow_run_id) == flow_run_id
    page = f"http://127.0.0.1:5999/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    page += "?workflowType=machine_learning"
    assert f"]({page})" in str(artifact.data)
    assert run.data.params["model.embedding_dim"] == "16"
    assert {"git_commit", "config_hash", "data_fingerprint"} <= set(run.data.tags)
    assert 0.0 <= run.data.metrics["final/test/ndcg_at_10"] <= 1.0
    assert run.data.metrics["final/test/n_users"] == 60
    curve = client.get_metric_history(summary["run_id"], "val/ndcg_at_10")
    assert len(curve) == 2
    assert client.get_metric_history(summary["run_id"], "train/examples_per_sec")
    artifacts = {item.path for item in client.list_artifacts(summary["run_id"])}
    assert {"config.yaml", "metrics.json", "metrics.md", "item_vectors.npy", "checkpoint"} <= artifacts
    assert summary["tracking_uri"] == f"sqlite:///{isolated_home}/mlruns/mlflow.db"
    # only the sections that shaped the run are params (the whole config is config.yaml)
    sections = {key.split(".")[0] for key in run.data.params}
    assert sections == {"data", "split", "encoder", "model", "trainer", "seed"}
    # the training curves are a figure among the run's artifacts: a PNG of both curves over 2 epochs
    figure = Path(client.download_artifacts(summary["run_id"], "plots/training_curves.png"))
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(figure).shape[1] > 800  # two panels side by side


def test_benchmark_flow_compares_every_model_under_one_parent_run() -> None:
    overrides = [
        *TINY,
        "benchmark.encoders=[none]",
        "benchmark.ease_l2=[10.0,100.0]",
        "benchmark.item_knn_neighbours=[5]",
        "benchmark.als_factors=[4]",
        "benchmark.als_regularization=[1.0]",
        "benchmark.als_iterations=3",
    ]
    summary = benchmark_flow(overrides=overrides)
    models = [row["model"] for row in summary["rows"]]
    assert models == ["popularity", "item_knn", "ease", "als", "two_tower[none]"]
    assert summary["rows"][2]["params"]["l2"] in (10.0, 100.0)
    client = MlflowClient()
    children = [client.get_run(row["run_id"]) for row in summary["rows"]]
    assert {child.data.tags["mlflow.parentRunId"] for child in children} == {summary["parent_run_id"]}
    written = json.loads((Path(summary["output_dir"]) / "benchmark.json").read_text())
    assert [row["model"] for row in written["rows"]] == models
    assert "| ease | test |" in summary["markdown"]
    test_ndcg = {row["model"]: row["metrics"]["test"]["ndcg@10"] for row in summary["rows"]}
    paired = summary["paired"]
    assert (paired["evaluation"], paired["metric"]) == ("test", "ndcg@10")
    assert [(row["model"], row["versus"]) for row in paired["rows"]] == [
        ("two_tower[none]", baseline) for baseline in models[:4]
    ]
    for row in paired["rows"]:  # each test user has a target: mean difference = difference of means
        assert row["n_users"] == 60
        expected = test_ndcg[row["model"]] - test_ndcg[row["versus"]]
        assert abs(row["mean_difference"] - expected) < 1e-9
        assert row["ci_low"] <= row["mean_difference"] <= row["ci_high"]
        assert row["p_value"] <= row["p_holm"] <= 1.0
    assert "## Paired differences (test ndcg@10" in summary["markdown"]
    assert written["paired"]["rows"] == paired["rows"]
    plot = Path(summary["output_dir"]) / "benchmark.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    parent_artifacts = {item.path for item in client.list_artifacts(summary["parent_run_id"])}
    assert {"benchmark.md", "benchmark.json", "benchmark.png"} <= parent_artifacts
    parent_metrics = client.get_run(summary["parent_run_id"]).data.metrics
    versus_ease = paired["rows"][2]
    assert versus_ease["versus"] == "ease"
    logged = parent_metrics["paired/two_tower_none-ease/ndcg_at_10_difference"]
    assert logged == versus_ease["mean_difference"]
    assert parent_metrics["paired/two_tower_none-ease/ndcg_at_10_p_holm"] == versus_ease["p_holm"]


def test_benchmark_refits_the_two_tower_on_train_and_validation_when_asked() -> None:
    overrides = [
        *TINY,
        "benchmark.baselines=[popularity]",
        "benchmark.encoders=[none]",
        "benchmark.two_tower_refit=[leave_last_out]",
    ]
    summary = benchmark_flow(overrides=overrides)
    row = summary["rows"][-1]
    assert row["params"]["refit"].startswith("train + valid,")
    assert {"val", "test", "test_no_refit"} <= set(row["metrics"])
    metrics = MlflowClient().get_run(row["run_id"]).data.metrics
    assert metrics["final/refit/test/ndcg_at_10"] == row["metrics"]["test"]["ndcg@10"]
    assert metrics["final/test/ndcg_at_10"] == row["metrics"]["test_no_refit"]["ndcg@10"]
    (paired,) = summary["paired"]["rows"]  # the refit's test figures are the ones paired
    popularity = summary["rows"][0]["metrics"]["test"]["ndcg@10"]
    assert abs(paired["mean_difference"] - (row["metrics"]["test"]["ndcg@10"] - popularity)) < 1e-9


def test_benchmark_refuses_a_catalogue_above_the_item_item_limit_in_one_line(
    capsys: pytest.CaptureFixture[str], isolated_home: Path
) -> None:
    code = main(["benchmark", *TINY, "benchmark.item_item_max_items=39"])
    error = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in error
    assert error.strip().splitlines()[-1] == (
        "explorec benchmark: error: item_knn refuses a catalogue of 40 items: the limit is 39 "
        "(benchmark.item_item_max_items); raise it if the memory allows, or leave item_knn out of "
        "benchmark.baselines"
    )
    store = isolated_home / "mlruns" / "mlflow.db"
    if store.exists():  # the refusal comes before the benchmark's parent run is started
        client = MlflowClient(f"sqlite:///{store}")
        experiments = [experiment.experiment_id for experiment in client.search_experiments()]
        assert not client.search_runs(experiments)


def test_benchmark_on_a_sample_of_users_says_so_in_summary_runs_and_report() -> None:
    overrides = [
        *TINY,
        "trainer.max_epochs=1",
        "benchmark.baselines=[popularity]",
        "benchmark.encoders=[none]",
    ]
    summary = benchmark_flow(overrides=[*overrides, "evaluation.max_users=25", "evaluation.seed=3"])
    note = (
        "A seeded sample of users stands in for the whole: val 25 of 60 users, test 25 of 60 users "
        "(evaluation.max_users=25, evaluation.seed=3)."
    )
    assert summary["evaluation_sample"] == note
    assert note in summary["markdown"]
    assert note in (Path(summary["output_dir"]) / "benchmark.md").read_text()
    client = MlflowClient()
    assert client.get_run(summary["parent_run_id"]).data.tags["evaluation.sample"] == note
    for row in summary["rows"]:
        assert (
            row["metrics"]["test"]["n_users"] == 25 and row["metrics"]["test"]["n_users_sampled_from"] == 60
        )
        run = client.get_run(row["run_id"])
        assert run.data.tags["evaluation.sample"] == note
        assert run.data.params["evaluation.max_users"] == "25"
    assert summary["paired"]["rows"][0]["n_users"] == 25  # both models scored on the same 25 users
