"""The pipeline flow on tiny synthetic data (no simulation): a passing candidate becomes champion, a failing
one does not, and a change of the gates alone re-decides the same version instead of registering a new one."""

from __future__ import annotations

import mlflow
from mlflow.tracking import MlflowClient

from flows.pipeline import pipeline_flow

from .conftest import TINY_SYNTHETIC

TINY = [*TINY_SYNTHETIC, "model.embedding_dim=16", "trainer.max_epochs=1", "pipeline.simulate=false"]


def test_pipeline_promotes_a_passing_candidate_and_refuses_a_failing_one(open_gates: list[str]) -> None:
    first = pipeline_flow(overrides=[*TINY, *open_gates])
    assert first["registration"]["gate_passed"] is True
    assert first["champion"] == first["registration"]["version"] == "1"
    client = MlflowClient(first["tracking_uri"])
    name = first["registration"]["registered_model"]
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    version = client.get_model_version(name, "1")
    assert version.tags["gate.status"] == "passed"
    assert {"git_commit", "config_hash", "data_fingerprint"} <= set(version.tags)

    strict = [*open_gates, "gates.catalog_coverage.threshold=1.01"]
    second = pipeline_flow(overrides=[*TINY, *strict, "pipeline.force=true"])
    assert second["cache"] == {"training": "forced", "simulation": "skipped", "registration": "forced"}
    assert second["run_id"] != first["run_id"]
    assert second["registration"]["version"] == "2"
    assert second["registration"]["gate_passed"] is False
    assert second["promotion"] is None
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    refused = client.get_model_version(name, "2")
    assert refused.tags["gate.status"] == "failed"
    assert "catalog_coverage" in refused.tags["gate.reasons"]


def test_changed_gates_alone_re_decide_the_reused_version(open_gates: list[str]) -> None:
    first = pipeline_flow(overrides=[*TINY, *open_gates])
    assert first["cache"] == {"training": "miss", "simulation": "skipped", "registration": "miss"}
    client = MlflowClient(first["tracking_uri"])
    name = first["registration"]["registered_model"]
    strict = [*open_gates, "gates.catalog_coverage.threshold=1.01"]
    second = pipeline_flow(overrides=[*TINY, *strict])
    assert second["run_id"] == first["run_id"]
    assert second["cache"]["training"] == "hit"
    assert second["cache"]["registration"] == "hit (gates decided again)"
    assert second["registration"]["version"] == "1"
    assert second["registration"]["gate_passed"] is False
    assert [str(v.version) for v in client.search_model_versions(f"name = '{name}'")] == ["1"]
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert "catalog_coverage" in client.get_model_version(name, "1").tags["gate.reasons"]


def test_a_new_policy_alone_repackages_the_trained_run_instead_of_retraining(open_gates: list[str]) -> None:
    first = pipeline_flow(overrides=[*TINY, *open_gates])
    second = pipeline_flow(overrides=[*TINY, *open_gates, "policy=thompson", "policy.exploration_rate=0.5"])
    assert second["run_id"] == first["run_id"]
    assert second["cache"]["training"] == "hit" and second["cache"]["registration"] == "miss"
    assert second["registration"]["version"] == "2"
    mlflow.set_tracking_uri(second["tracking_uri"])
    name = second["registration"]["registered_model"]
    served = {}
    for version in ("1", "2"):
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version}", model_config={"torch_threads": 0})
        served[version] = model.unwrap_python_model().recommender.bundle.policy
    assert (served["1"].name, served["1"].exploration_rate) == ("linucb", 1.0)
    assert (served["2"].name, served["2"].exploration_rate) == ("thompson", 0.5)
    third = pipeline_flow(overrides=[*TINY, *open_gates, "policy=thompson", "policy.exploration_rate=0.5"])
    assert third["cache"] == {"training": "hit", "simulation": "skipped", "registration": "hit"}
    assert third["registration"]["version"] == "2"


def test_a_failed_gate_ends_the_run_in_a_named_state_with_a_warning_line(open_gates: list[str]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    strict = [*open_gates, "gates.catalog_coverage.threshold=1.01"]
    state = pipeline_flow(overrides=[*TINY, *strict, "pipeline.force=true"], return_state=True)
    assert state.is_completed() and state.name == "Not promoted"
    summary = state.result()
    assert summary["registration"]["gate_passed"] is False
    assert "catalog_coverage" in state.message and "not promoted" in state.message
    version = summary["registration"]["version"]
    gates_folder = f"gates/v{version}"
    logged = {
        item.path
        for item in MlflowClient(summary["tracking_uri"]).list_artifacts(summary["run_id"], gates_folder)
    }
    assert f"{gates_folder}/comparison.png" in logged  # candidate vs champion, the bounds drawn
    APILogHandler().flush()  # the run's log lines are sent to the API in batches
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(state.state_details.flow_run_id)
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])))
    assert flow_run.state.name == "Not promoted"  # what the UI's run list shows
    warnings = [log.message for log in logs if log.level == 30]
    assert any(m.startswith("gate failed") and "catalog_coverage" in m for m in warnings), warnings
    # a passing candidate keeps the plain Completed state and the CLI's call still gets the summary
    passed = pipeline_flow(overrides=[*TINY, *open_gates], return_state=True)
    assert passed.name == "Completed" and passed.result()["champion"] is not None
