"""The pipeline's simulate step and reuse on a tiny synthetic world (real Prefect, MLflow SQLite, simulator).

The candidate's policy is simulated against the baselines; its lift over greedy_online is attached to the
registered version and gated. A rerun with nothing changed reuses the training run, the simulation and the
version; `pipeline.force=true` makes new ones; a policy that loses to greedy_online is refused.
"""

from __future__ import annotations

import json
import math
from typing import Any

from mlflow.tracking import MlflowClient
from prefect.artifacts import Artifact

from explorec.registry.records import DECISION_JSON, read_record_file, version_metrics
from flows.pipeline import pipeline_flow

TINY_WORLD = [
    "data=synthetic",
    "data.synthetic.n_users=80",
    "data.synthetic.n_items=60",
    "data.synthetic.n_interactions=2400",
    "encoder=minilm",
    "model.embedding_dim=16",
    "model.history_length=10",
    "trainer.max_epochs=1",
    "trainer.batch_size=128",
    "trainer.enable_progress_bar=false",
    "policy=epsilon_greedy",  # these tests follow the lift of a known, simple policy
    "policy.exploration_rate=0.1",
    "simulate.min_user_positives=8",
    "simulate.tune_users=10",
    "simulate.test_users=20",
    "simulate.n_visits=4",
    "simulate.slate_size=5",
    "simulate.n_replications=3",
    "simulate.n_candidates=20",
    "simulate.n_text_clusters=4",
    "simulate.stand_in_dimension=8",
    "simulate.calibrations=[{name:main,mean_click_probability:0.05,top10_click_probability:0.13}]",
]
GATE_METRIC = "sim/lift_ci_low"


def _training_runs(client: MlflowClient, summary: dict[str, Any]) -> list[str]:
    """Return the ids of the experiment's two-tower training runs."""
    runs = client.search_runs([summary["experiment_id"]], filter_string="tags.model = 'two_tower'")
    return sorted(run.info.run_id for run in runs)


def _simulation_runs(client: MlflowClient, summary: dict[str, Any]) -> list[str]:
    """Return the ids of the experiment's simulation runs."""
    runs = client.search_runs([summary["experiment_id"]], filter_string="tags.kind = 'simulate'")
    return sorted(run.info.run_id for run in runs)


def _versions(client: MlflowClient, name: str) -> list[str]:
    """Return the registered versions of a model, in order."""
    return sorted((str(v.version) for v in client.search_model_versions(f"name = '{name}'")), key=int)


def _decision(client: MlflowClient, name: str, version: str) -> dict[str, Any]:
    """Return the gate decision recorded with a version's model."""
    text = read_record_file(client, client.get_model_version(name, version), DECISION_JSON)
    assert text is not None
    return json.loads(text)


def _pipeline_artifact() -> str:
    """Return the Markdown of the latest `pipeline` Prefect artifact."""
    artifact = Artifact.get("pipeline")
    assert artifact is not None
    return str(artifact.data)


def test_simulated_lift_is_gated_reused_on_rerun_and_renewed_by_force(open_gates: list[str]) -> None:
    first = pipeline_flow(overrides=[*TINY_WORLD, *open_gates])
    client = MlflowClient(first["tracking_uri"])
    name = first["registration"]["registered_model"]
    assert first["cache"] == {"training": "miss", "simulation": "miss", "registration": "miss"}

    simulation = first["simulation"]
    assert simulation["policy"] == "epsilon_greedy@0.1" and simulation["control"] == "greedy_online"
    sim_run = client.get_run(simulation["run_id"])
    assert sim_run.info.status == "FINISHED"
    simulated = {key: value for key, value in sim_run.data.params.items() if "policy_rates" in key}
    assert simulated == {"simulate.policy_rates.epsilon_greedy": "[0.1]"}
    lift = sim_run.data.metrics[GATE_METRIC]
    assert math.isfinite(lift)
    assert lift == sim_run.data.metrics["sim/main/lift_ci_low"] <= sim_run.data.metrics["sim/main/lift"]
    assert sim_run.data.tags["explorec.candidate_run_id"] == first["run_id"]

    version = client.get_model_version(name, "1")
    assert version_metrics(client, version)[GATE_METRIC] == lift
    assert version.tags["explorec.simulation_run_id"] == simulation["run_id"]
    rows = {row["rule"]: row for row in _decision(client, name, "1")["table"]}
    assert rows["simulator_lift"]["candidate"] == lift
    assert rows["simulator_lift"]["passed"] is (lift > 0)
    assert first["registration"]["gate_passed"] is all(row["passed"] for row in rows.values())
    champion_before = first["champion"]
    markdown = _pipeline_artifact()
    for linked in (first["run_id"], simulation["run_id"], "version 1", "simulator_lift", "new (cache miss)"):
        assert linked in markdown

    second = pipeline_flow(overrides=[*TINY_WORLD, *open_gates])
    assert second["cache"] == {"training": "hit", "simulation": "hit", "registration": "hit"}
    assert second["run_id"] == first["run_id"]
    assert second["simulation"]["run_id"] == simulation["run_id"]
    assert second["registration"]["version"] == "1"
    assert second["registration"]["gate_passed"] is first["registration"]["gate_passed"]
    assert second["champion"] == champion_before
    assert _training_runs(client, first) == [first["run_id"]]
    assert _simulation_runs(client, first) == [simulation["run_id"]]
    assert _versions(client, name) == ["1"]
    assert f"training run: `{first['run_id']}`" in _pipeline_artifact()
    assert "reused (cache hit)" in _pipeline_artifact()

    forced = pipeline_flow(overrides=[*TINY_WORLD, *open_gates, "pipeline.force=true"])
    assert forced["cache"] == {"training": "forced", "simulation": "forced", "registration": "forced"}
    assert forced["run_id"] != first["run_id"]
    assert forced["simulation"]["run_id"] != simulation["run_id"]
    assert forced["registration"]["version"] == "2"
    assert len(_training_runs(client, first)) == 2
    assert len(_simulation_runs(client, first)) == 2
    assert _versions(client, name) == ["1", "2"]


def test_a_policy_that_loses_to_greedy_online_is_refused_and_the_champion_stays(
    open_gates: list[str],
) -> None:
    first = pipeline_flow(overrides=[*TINY_WORLD, *open_gates, "pipeline.simulate=false"])
    assert first["simulation"]["cache"] == "skipped"
    assert first["champion"] == "1"
    client = MlflowClient(first["tracking_uri"])
    name = first["registration"]["registered_model"]

    # serving every slot uniformly at random cannot beat greedy_online when the recommender is informative
    random = pipeline_flow(overrides=[*TINY_WORLD, *open_gates, "policy.exploration_rate=1.0"])
    assert random["simulation"]["policy"] == "epsilon_greedy@1"
    lift = random["simulation"]["metrics"][GATE_METRIC]
    assert lift <= 0.0
    assert random["registration"]["version"] == "2"
    assert random["registration"]["gate_passed"] is False
    reasons = random["registration"]["gate_reasons"]
    assert any(reason.startswith("simulator_lift:") for reason in reasons), reasons
    assert random["promotion"] is None
    assert random["champion"] == "1"
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert client.get_model_version(name, "2").tags["gate.status"] == "failed"
