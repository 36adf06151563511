"""Flow `replay` on a training run of tiny synthetic data: the table, the MLflow run and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from explorec.errors import ConfigError
from explorec.serving.replay import REPLAYED_RUN_TAG
from flows.replay import replay_flow
from flows.serve import replay as served_replay
from flows.train import train_flow

from .conftest import TINY_SYNTHETIC

TINY = [*TINY_SYNTHETIC, "model.embedding_dim=16", "trainer.max_epochs=1", "policy=linucb"]


def test_replay_packages_the_run_compares_with_greedy_and_records_a_run() -> None:
    """The run's recommender is rebuilt as registration builds it, replayed per configuration, tracked."""
    trained = train_flow(overrides=TINY)
    settings = [
        "replay.evaluation=test",
        "replay.visits=2",
        "replay.k=3",
        "replay.feedback_weights=[1.0,0.01]",
    ]
    summary = replay_flow(overrides=[*TINY, f"replay.run_id={trained['run_id']}", *settings])
    labels = [row["policy"] for row in summary["rows"]]
    assert labels == [
        "greedy (control)",
        "linucb@0 (feedback weight 1)",
        "linucb@0 (feedback weight 0.01)",
        "linucb@1 (feedback weight 1)",
        "linucb@1 (feedback weight 0.01)",
    ]
    assert summary["evaluation"] == "test" and summary["visits"] == 2 and summary["k"] == 3
    assert all(row["ci_low"] <= row["difference"] <= row["ci_high"] for row in summary["rows"][1:])

    client = MlflowClient(summary["tracking_uri"])
    run = client.get_run(summary["run_id"])
    assert run.data.tags[REPLAYED_RUN_TAG] == trained["run_id"]
    assert run.data.params["replay.evaluation"] == "test"
    found = run.data.metrics["replay/linucb_at_1_feedback_weight_0.01/found"]
    assert found == pytest.approx(summary["rows"][4]["found"])
    assert run.data.metrics["replay/greedy_control/found"] == pytest.approx(summary["rows"][0]["found"])
    artifacts = {item.path for item in client.list_artifacts(summary["run_id"])}
    assert {"replay.md", "replay.json"} <= artifacts
    table = json.loads(Path(client.download_artifacts(summary["run_id"], "replay.json")).read_text())
    assert [row["policy"] for row in table["rows"]] == labels


def test_replay_without_a_run_id_says_so() -> None:
    """No replay.run_id: a ConfigError naming the field, before anything is packaged."""
    with pytest.raises(ConfigError, match=r"replay\.run_id is required"):
        replay_flow(overrides=TINY)


def test_served_form_keeps_a_hex_run_id_a_string() -> None:
    """The deployment quotes the run id, so an id that reads as a number stays the same string."""
    with pytest.raises(ConfigError, match=r"replay\.run_id='1234e5678': no such MLflow run"):
        served_replay.fn(run_id="1234e5678", dataset="synthetic", overrides=TINY[1:])
