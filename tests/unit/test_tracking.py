"""Tracking: a relative SQLite store resolves under the project root; runs carry the standard tags."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from explorec.config import TrackingConfig
from explorec.tracking.runs import tracked_run
from explorec.tracking.store import (
    config_params,
    configure_tracking,
    metric_dict,
    resolve_tracking_uri,
    run_tags,
)


def test_relative_sqlite_uri_resolves_under_the_project_root(isolated_home: Path) -> None:
    uri = resolve_tracking_uri("sqlite:///mlruns/mlflow.db")
    assert uri == f"sqlite:///{isolated_home}/mlruns/mlflow.db"
    assert resolve_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_configure_tracking_creates_the_experiment_and_logs_into_a_temporary_store(
    isolated_home: Path,
) -> None:
    target = configure_tracking(TrackingConfig(experiment="unit"))
    assert target.artifact_location == (isolated_home / "mlruns" / "artifacts").as_uri()
    tags = run_tags(config_hash="abc", data_fingerprint="def")
    with mlflow.start_run(tags=tags) as run:
        mlflow.log_params(config_params({"model": {"embedding_dim": 64}, "seed": 1}))
        mlflow.log_metrics(metric_dict({"ndcg@10": 0.25}, prefix="val/"), step=1)
    stored = MlflowClient(target.tracking_uri).get_run(run.info.run_id)
    assert stored.data.params == {"model.embedding_dim": "64", "seed": "1"}
    assert stored.data.metrics["val/ndcg_at_10"] == 0.25
    assert stored.data.tags["config_hash"] == "abc"
    assert stored.data.tags["data_fingerprint"] == "def"
    assert stored.data.tags["git_commit"]
    assert (isolated_home / "mlruns" / "mlflow.db").is_file()
    assert configure_tracking(TrackingConfig(experiment="unit")).experiment_id == target.experiment_id


def _store(tmp_path: Path) -> tuple[MlflowClient, str]:
    """A client on a fresh SQLite store in tmp_path and the id of a new experiment there."""
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    return client, client.create_experiment("runs", artifact_location=(tmp_path / "artifacts").as_uri())


def test_tracked_run_ends_finished_with_its_tags(tmp_path: Path) -> None:
    client, experiment_id = _store(tmp_path)
    with tracked_run(client, experiment_id, run_name="ok", tags={"kind": "unit"}) as run_id:
        assert client.get_run(run_id).info.status == "RUNNING"
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "ok"
    assert run.data.tags["kind"] == "unit"
    assert "mlflow.parentRunId" not in run.data.tags


def test_tracked_run_ends_failed_and_propagates_the_exception(tmp_path: Path) -> None:
    client, experiment_id = _store(tmp_path)
    with (
        pytest.raises(RuntimeError, match="boom"),
        tracked_run(client, experiment_id, run_name="broken", tags={}) as run_id,
    ):
        raise RuntimeError("boom")
    assert client.get_run(run_id).info.status == "FAILED"


def test_tracked_run_nested_under_a_parent_carries_the_parent_tag(tmp_path: Path) -> None:
    client, experiment_id = _store(tmp_path)
    with (
        tracked_run(client, experiment_id, run_name="parent", tags={}) as parent_id,
        tracked_run(client, experiment_id, run_name="child", tags={}, parent_run_id=parent_id) as child,
    ):
        assert client.get_run(child).info.status == "RUNNING"
    assert client.get_run(child).data.tags["mlflow.parentRunId"] == parent_id
    assert client.get_run(child).info.status == "FINISHED"
    assert client.get_run(parent_id).info.status == "FINISHED"


def test_tracked_run_ends_killed_on_a_stopping_exception(tmp_path: Path) -> None:
    client, experiment_id = _store(tmp_path)
    with (
        pytest.raises(StopIteration),
        tracked_run(client, experiment_id, run_name="stopped", tags={}, killed_by=(StopIteration,)) as run_id,
    ):
        raise StopIteration
    assert client.get_run(run_id).info.status == "KILLED"
