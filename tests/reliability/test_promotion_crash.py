"""A forced promotion killed with SIGKILL just before or just after the champion alias moves.

The kill is real: a `python -c` process imports the library, wraps `ModelRegistry._move_alias` so that it
sends itself SIGKILL right before or right after the real move, and promotes. The registry must then hold a
complete record of the attempt (started, who, why, forced), the champion must be either unchanged or moved
with that record, a dry run must report the cut-off attempt, and the next promotion must settle it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus

from explorec.config.registry import GatesConfig, RegistryConfig
from explorec.registry.promotion import ATTEMPT_TAG_PREFIX, ModelRegistry
from tests.reliability.helpers import environment

NAME = "explorec-crash"
GOOD = {
    "final/test/ndcg_at_10": 0.08,
    "final/test/recall_at_20": 0.15,
    "served/policy/intra_list_diversity": 0.7,
    "served/policy/catalog_coverage": 0.4,
    "served/policy/exposure_gini": 0.7,
}
LESS_DIVERSE = {**GOOD, "served/policy/intra_list_diversity": 0.55}

KILLED_PROMOTION = textwrap.dedent(
    """
    import os, sys
    from explorec.config.registry import GatesConfig, RegistryConfig
    from explorec.registry.promotion import ModelRegistry
    uri, name, version, lock_dir, when = sys.argv[1:6]
    move = ModelRegistry._move_alias

    def move_then_die(self, model, alias, target):
        if alias == "champion" and when == "before":
            os.kill(os.getpid(), 9)
        move(self, model, alias, target)
        if alias == "champion" and when == "after":
            os.kill(os.getpid(), 9)

    ModelRegistry._move_alias = move_then_die
    registry = ModelRegistry(uri, RegistryConfig(lock_dir=lock_dir))
    registry.promote(name, version, GatesConfig(), force=True, reason="hotfix approved by X", actor="alice")
    print("the promotion was not killed")
    """
)


def candidate(client: MlflowClient, experiment_id: str, tmp_path: Path, metrics: dict[str, float]) -> str:
    """Log a finished run with a READY logged model holding an MLmodel file; return the run id."""
    run_id = client.create_run(experiment_id, tags={"git_commit": "abc"}).info.run_id
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)
    client.set_terminated(run_id, "FINISHED")
    model = client.create_logged_model(experiment_id, name="recommender", source_run_id=run_id)
    files = tmp_path / f"model-{run_id}"
    files.mkdir()
    (files / "MLmodel").write_text("flavors: {}\n")
    client.log_model_artifacts(model.model_id, str(files))
    client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    return run_id


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[ModelRegistry]:
    """A store with v1 (champion, passed the gates) and v2 (less diverse: only a forced promotion moves)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)  # MLflow resolves `models:/m-...` sources through the current tracking URI
    registry = ModelRegistry(uri, RegistryConfig(lock_dir=str(tmp_path / "locks")))
    client = registry.client
    experiment_id = client.create_experiment("crash", artifact_location=(tmp_path / "artifacts").as_uri())
    first = registry.register_candidate(candidate(client, experiment_id, tmp_path, GOOD), NAME)
    assert registry.promote(NAME, first, GatesConfig(), actor="carol").outcome == "promoted"
    second = registry.register_candidate(candidate(client, experiment_id, tmp_path, LESS_DIVERSE), NAME)
    assert (first, second) == ("1", "2")
    yield registry
    mlflow.set_tracking_uri(previous)


def attempt_records(registry: ModelRegistry) -> list[dict[str, object]]:
    """Return the attempts recorded on the registered model, oldest first."""
    tags = registry.client.get_registered_model(NAME).tags
    records = [json.loads(value) for key, value in tags.items() if key.startswith(ATTEMPT_TAG_PREFIX)]
    return sorted(records, key=lambda record: str(record["attempt_id"]))


def kill_promotion(registry: ModelRegistry, tmp_path: Path, when: str) -> None:
    """Run a forced promotion of v2 in a new process that SIGKILLs itself `when` the champion alias moves."""
    uri = registry.client._tracking_client.tracking_uri
    done = subprocess.run(
        [sys.executable, "-c", KILLED_PROMOTION, uri, NAME, "2", str(tmp_path / "locks"), when],
        env=environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stdout, done.stderr[-3000:])


def test_killed_right_after_the_alias_move_the_move_is_audited(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    """v2 is champion; it carries the started attempt (who, why, forced); the next promotion completes it."""
    kill_promotion(registry, tmp_path, "after")
    assert registry.champion_version(NAME) == "2"
    tags = registry.client.get_model_version(NAME, "2").tags
    assert tags[f"{ATTEMPT_TAG_PREFIX}state"] == "started"
    assert tags[f"{ATTEMPT_TAG_PREFIX}by"] == "alice"
    assert tags[f"{ATTEMPT_TAG_PREFIX}forced"] == "true"
    assert tags[f"{ATTEMPT_TAG_PREFIX}reason"] == "hotfix approved by X"
    assert tags[f"{ATTEMPT_TAG_PREFIX}outcome"] == "forced"
    assert tags[f"{ATTEMPT_TAG_PREFIX}previous_champion"] == "1"
    assert "promotion.promoted_at" not in tags  # the kill came between the move and the final tags
    cut_off = attempt_records(registry)[-1]
    assert cut_off["state"] == "started" and cut_off["version"] == "2" and cut_off["actor"] == "alice"

    dry = registry.promote(NAME, "2", GatesConfig(), dry_run=True, actor="bob")
    assert len(dry.interrupted) == 1 and str(cut_off["attempt_id"]) in dry.interrupted[0]
    assert attempt_records(registry)[-1]["state"] == "started"  # a dry run touches nothing

    again = registry.promote(NAME, "2", GatesConfig(), actor="bob")
    assert again.outcome == "already_champion"
    assert len(again.interrupted) == 1 and "after the move" in again.interrupted[0]
    tags = registry.client.get_model_version(NAME, "2").tags
    assert tags["promotion.promoted_by"] == "alice" and tags["promotion.forced"] == "true"
    assert tags["promotion.reason"] == "hotfix approved by X"
    assert tags["promotion.attempt_id"] == cut_off["attempt_id"]
    assert registry.client.get_model_version(NAME, "1").tags["promotion.replaced_by_version"] == "2"
    settled = next(r for r in attempt_records(registry) if r["attempt_id"] == cut_off["attempt_id"])
    assert settled["state"] == "interrupted" and "after the move" in str(settled["settled"])
    assert registry.promote(NAME, "2", GatesConfig(), dry_run=True).interrupted == ()


def test_killed_right_before_the_alias_move_nothing_moves(registry: ModelRegistry, tmp_path: Path) -> None:
    """v1 stays champion; the attempt is on record as started; the next promotion marks it interrupted."""
    kill_promotion(registry, tmp_path, "before")
    assert registry.champion_version(NAME) == "1"
    tags = registry.client.get_model_version(NAME, "2").tags
    assert tags[f"{ATTEMPT_TAG_PREFIX}state"] == "started" and tags[f"{ATTEMPT_TAG_PREFIX}by"] == "alice"
    assert "promotion.promoted_at" not in tags

    refused = registry.promote(NAME, "2", GatesConfig(), actor="bob")
    assert refused.outcome == "refused" and registry.champion_version(NAME) == "1"
    assert len(refused.interrupted) == 1 and "before the move" in refused.interrupted[0]
    assert "promotion.promoted_at" not in registry.client.get_model_version(NAME, "2").tags
    states = [record["state"] for record in attempt_records(registry)]
    assert states == ["finished", "interrupted", "finished"]
