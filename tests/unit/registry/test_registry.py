"""Registry on a temporary SQLite store: round trip to a champion loaded by alias, refusal and forced
override, dry run, a crash before the alias move, concurrent promotions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from explorec.config.registry import GatesConfig, RegistryConfig
from explorec.registry.promotion import ATTEMPT_TAG_PREFIX, ModelRegistry, PromotionError
from explorec.serving.bundle import RecommenderBundle
from explorec.serving.pyfunc import log_recommender

NAME = "explorec-test"
GOOD = {
    "final/test/ndcg_at_10": 0.08,
    "final/test/recall_at_20": 0.15,
    "served/policy/intra_list_diversity": 0.7,
    "served/policy/catalog_coverage": 0.4,
    "served/policy/exposure_gini": 0.7,
}
LESS_DIVERSE = {**GOOD, "served/policy/intra_list_diversity": 0.55}
PROVENANCE = {"git_commit": "abc123", "config_hash": "cfg0", "data_fingerprint": "fp0"}


@pytest.fixture
def tracking(tracking_uri: str) -> Iterator[str]:
    """Point MLflow at the temporary store for the test, and back afterwards."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    yield tracking_uri
    mlflow.set_tracking_uri(previous)


def log_candidate(bundle: RecommenderBundle, metrics: dict[str, float]) -> str:
    """Log a finished training-like run (provenance tags), then metrics and pyfunc into it; return its id."""
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name("candidates") or client.get_experiment(
        client.create_experiment("candidates")
    )
    run_id = client.create_run(experiment.experiment_id, tags=PROVENANCE).info.run_id
    client.set_terminated(run_id, "FINISHED")
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(metrics)
        log_recommender(bundle)
    return run_id


def recorded_attempts(registry: ModelRegistry) -> list[dict[str, object]]:
    """Return every promotion attempt the registry recorded on the model, oldest first."""
    tags = registry.client.get_registered_model(NAME).tags
    records = [json.loads(value) for key, value in tags.items() if key.startswith(ATTEMPT_TAG_PREFIX)]
    return sorted(records, key=lambda record: str(record["attempt_id"]))


def version_tags(registry: ModelRegistry, version: str) -> dict[str, str]:
    """Return a model version's tags."""
    return registry.client.get_model_version(NAME, version).tags


def predict_in_fresh_process(
    tracking_uri: str, model_uri: str, requests: list[dict[str, object]]
) -> list[dict]:
    """Load `model_uri` with mlflow.pyfunc.load_model in a new Python process and return its answers."""
    script = textwrap.dedent(
        f"""
        import json, sys, mlflow, pandas as pd
        mlflow.set_tracking_uri({tracking_uri!r})
        model = mlflow.pyfunc.load_model({model_uri!r})
        answers = model.predict(pd.DataFrame(json.loads(sys.stdin.read())))
        print("ANSWERS" + answers.to_json(orient="records"))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(requests),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("ANSWERS"))
    return json.loads(line.removeprefix("ANSWERS"))


def test_round_trip_refusal_force_and_load_by_alias(
    tracking: str, bundle: RecommenderBundle, tmp_path: Path
) -> None:
    """Second candidate less diverse: refused with the reason visible; then forced with a recorded reason."""
    registry = ModelRegistry(tracking)
    gates = GatesConfig()
    first_run = log_candidate(bundle, GOOD)
    first = registry.register_candidate(first_run, NAME)
    tags = version_tags(registry, first)
    assert {key: tags[key] for key in PROVENANCE} == PROVENANCE
    assert tags["gate.status"] == "pending"
    assert not [key for key in tags if key.startswith("metric.")]  # metrics live in the record, not tags
    assert registry.version_metrics(NAME, first)["served/policy/intra_list_diversity"] == 0.7

    assert registry.evaluate_gates(NAME, first, gates).passed
    assert registry.alias_version(NAME, "challenger") == first
    assert registry.promote(NAME, first, gates, actor="alice").outcome == "promoted"
    assert registry.champion_version(NAME) == first

    second_run = log_candidate(bundle, LESS_DIVERSE)
    second = registry.register_candidate(second_run, NAME)
    decision = registry.evaluate_gates(NAME, second, gates)
    assert not decision.passed
    tags = version_tags(registry, second)
    assert tags["gate.status"] == "failed"
    assert "intra_list_diversity: 0.55 is worse than the champion's 0.7" in tags["gate.reasons"]
    assert registry.alias_version(NAME, "challenger") == first
    second_version = registry.client.get_model_version(NAME, second)
    model = registry.client.get_logged_model(second_version.source.removeprefix("models:/"))
    assert tags["gate.decision"] == f"{model.artifact_location}/registry/{NAME}/v{second}/decision.md"
    table = mlflow.artifacts.download_artifacts(  # the decision is filed with the version's model
        artifact_uri=f"{model.artifact_location}/registry/{NAME}/v{second}", dst_path=str(tmp_path)
    )
    assert "FAIL: intra_list_diversity" in Path(table, "decision.md").read_text()
    description = second_version.description
    assert description.startswith("**Gate: FAILED**") and f"against champion v{first}" in description
    assert json.loads(Path(table, "decision.json").read_text())["status"] == "failed"
    assert not registry.client.list_artifacts(second_run, "gates/v2/decision.md")  # not on the run

    refused = registry.promote(NAME, second, gates, actor="bob")
    assert refused.outcome == "refused" and not refused.promoted
    assert registry.champion_version(NAME) == first
    with pytest.raises(PromotionError, match="needs a reason"):
        registry.promote(NAME, second, gates, force=True, actor="bob")

    forced = registry.promote(
        NAME, second, gates, force=True, reason="diversity metric was mis-set", actor="bob"
    )
    assert forced.outcome == "forced" and registry.champion_version(NAME) == second
    tags = version_tags(registry, second)
    assert tags["promotion.forced"] == "true"
    assert tags["promotion.reason"] == "diversity metric was mis-set"
    assert tags["promotion.promoted_by"] == "bob" and tags["promotion.replaced_version"] == first
    assert "promotion.promoted_at" in tags
    assert version_tags(registry, first)["promotion.replaced_by_version"] == second
    assert "promotion.replaced_at" in version_tags(registry, first)
    outcomes = [attempt["outcome"] for attempt in recorded_attempts(registry)]
    assert outcomes == ["promoted", "refused", "forced"]

    known_user, known_item = bundle.user_ids[0], bundle.item_ids[0]
    requests = [
        {"user_id": known_user, "k": 5, "seed": 1},
        {"user_id": "someone-new", "k": 5, "exploration_rate": 0.3, "seed": 2},
        {"recent_item_ids": [known_item, "no-such-item"], "k": 3, "seed": 3},
    ]
    answers = predict_in_fresh_process(tracking, f"models:/{NAME}@champion", requests)
    assert [answer["history_source"] for answer in answers] == ["user", "none", "request"]
    assert [answer["cold_start"] for answer in answers] == [False, True, False]
    assert [len(answer["item_ids"]) for answer in answers] == [5, 5, 3]
    assert answers[2]["n_unknown_items"] == 1 and known_item not in answers[2]["item_ids"]
    assert all(len(answer["propensities"]) == len(answer["explored"]) for answer in answers)


def test_dry_run_touches_nothing(tracking: str, bundle: RecommenderBundle) -> None:
    """A dry run returns the decision without moving aliases, tagging or recording an attempt."""
    registry = ModelRegistry(tracking)
    version = registry.register_candidate(log_candidate(bundle, GOOD), NAME)
    before = version_tags(registry, version)
    result = registry.promote(NAME, version, GatesConfig(), dry_run=True, actor="carol")
    assert result.dry_run and result.decision.passed and result.outcome == "dry_run"
    assert registry.champion_version(NAME) is None
    assert version_tags(registry, version) == before
    assert recorded_attempts(registry) == []


def test_crash_before_alias_move_leaves_champion(
    tracking: str, bundle: RecommenderBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception injected between registration and the alias move leaves champion and challenger alone."""
    registry = ModelRegistry(tracking)
    gates = GatesConfig()
    run_id = log_candidate(bundle, GOOD)
    first = registry.register_candidate(run_id, NAME)
    registry.evaluate_gates(NAME, first, gates)
    registry.promote(NAME, first, gates, actor="alice")
    second = registry.register_candidate(run_id, NAME, metrics={"final/test/ndcg_at_10": 0.09})

    def crash(*args: object) -> None:
        raise RuntimeError("injected crash before the alias move")

    monkeypatch.setattr(registry, "_move_alias", crash)
    with pytest.raises(RuntimeError, match="injected crash"):
        registry.evaluate_gates(NAME, second, gates)
    with pytest.raises(RuntimeError, match="injected crash"):
        registry.promote(NAME, second, gates, actor="dave")
    assert registry.champion_version(NAME) == first
    assert registry.alias_version(NAME, "challenger") == first
    assert "promotion.promoted_at" not in version_tags(registry, second)
    last = recorded_attempts(registry)[-1]
    assert last["version"] == second and last["outcome"] == "error" and "injected crash" in str(last["error"])


def test_malformed_request_raises_invalid_parameter_value(tracking: str, bundle: RecommenderBundle) -> None:
    """Through the pyfunc, a malformed request raises MlflowException INVALID_PARAMETER_VALUE (HTTP 400)."""
    with mlflow.start_run():
        info = log_recommender(bundle)
    model = mlflow.pyfunc.load_model(info.model_uri, model_config={"torch_threads": 0})
    with pytest.raises(MlflowException, match="exploration_rate must lie in") as raised:
        model.predict(pd.DataFrame([{"user_id": "u1", "exploration_rate": 2.0}]))
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert raised.value.get_http_status_code() == 400
    assert model.metadata.get_input_schema() is None  # so MLflow passes unknown fields on to be refused
    assert model.metadata.metadata["request_fields"] == [
        "user_id",
        "recent_item_ids",
        "k",
        "exploration_rate",
        "seed",
        "shown_item_ids",
        "clicked_item_ids",
    ]


PROMOTE_WORKER = """
import sys, time
from pathlib import Path
from explorec.config.registry import GatesConfig, RegistryConfig
from explorec.registry.promotion import ModelRegistry
uri, name, version, barrier, lock_dir = sys.argv[1:6]
registry = ModelRegistry(uri, RegistryConfig(lock_dir=lock_dir))
Path(barrier, f"ready-{version}").touch()
while not Path(barrier, "go").exists():
    time.sleep(0.01)
print(registry.promote(name, version, GatesConfig(), actor=f"worker-{version}").outcome)
"""


def register_versions(registry: ModelRegistry, bundle: RecommenderBundle, count: int) -> list[str]:
    """Register `count` versions of one logged candidate, all passing the default gates."""
    run_id = log_candidate(bundle, GOOD)
    return [registry.register_candidate(run_id, NAME) for _ in range(count)]


def assert_serialised(registry: ModelRegistry, versions: list[str]) -> None:
    """Every attempt is recorded, each replaced the champion its predecessor set, and one champion is left."""
    attempts = recorded_attempts(registry)
    assert sorted(str(attempt["version"]) for attempt in attempts) == sorted(versions)
    assert [attempt["outcome"] for attempt in attempts] == ["promoted"] * len(versions)
    previous = None
    for attempt in attempts:
        assert attempt["previous_champion"] == previous, attempts
        previous = attempt["version"]
    assert registry.champion_version(NAME) == previous
    holders = [v for v in versions if "promotion.replaced_at" not in version_tags(registry, v)]
    assert holders == [previous]


def test_concurrent_promotions_from_threads_are_serialised(
    tracking: str, bundle: RecommenderBundle, tmp_path: Path
) -> None:
    """8 threads (each its own lock file handle) promote 8 versions at once: one consistent champion."""
    registry = ModelRegistry(tracking)
    versions = register_versions(registry, bundle, 8)
    lock_cfg = RegistryConfig(lock_dir=str(tmp_path / "locks"))
    start = threading.Barrier(len(versions))

    def promote(version: str) -> str:
        worker = ModelRegistry(tracking, lock_cfg)
        start.wait()
        return worker.promote(NAME, version, GatesConfig(), actor=f"thread-{version}").outcome

    with ThreadPoolExecutor(max_workers=len(versions)) as pool:
        outcomes = list(pool.map(promote, versions))
    assert outcomes == ["promoted"] * len(versions)
    assert_serialised(registry, versions)


@pytest.mark.slow
def test_concurrent_promotions_from_processes_are_serialised(
    tracking: str, bundle: RecommenderBundle, tmp_path: Path
) -> None:
    """8 processes (as 8 CLI calls would) promote 8 versions at once: one consistent champion."""
    registry = ModelRegistry(tracking)
    versions = register_versions(registry, bundle, 8)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    arguments = [tracking, NAME, "", str(barrier), str(tmp_path / "locks")]
    workers = []
    for version in versions:
        arguments[2] = version
        workers.append(
            subprocess.Popen(
                [sys.executable, "-c", PROMOTE_WORKER, *arguments],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
    deadline = time.monotonic() + 240
    while len(list(barrier.glob("ready-*"))) < len(workers) and time.monotonic() < deadline:
        assert all(worker.poll() is None for worker in workers), "a worker died before the barrier"
        time.sleep(0.05)
    (barrier / "go").touch()
    outputs = [worker.communicate(timeout=300) for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), [err[-2000:] for _, err in outputs]
    assert sorted(out.strip().splitlines()[-1] for out, _ in outputs) == ["promoted"] * 8
    assert_serialised(registry, versions)
