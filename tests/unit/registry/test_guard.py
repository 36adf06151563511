"""The champion guard on a real SQLite registry: a move of `champion` to a failed-gate version made outside
`explorec promote` (as the MLflow UI does it: one alias call) is restored or recorded with a warning on the
version page, and the service's registry source hands such a move to the guard."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from explorec.config.registry import GatesConfig
from explorec.registry.guard import guard_champion
from explorec.registry.promotion import ModelRegistry
from explorec.registry.servable import refusal_reason
from explorec.serving.pyfunc import log_recommender
from tests.unit.registry.conftest import tiny_bundle

NAME = "explorec-two-tower"
METRICS = {
    "final/test/ndcg_at_10": 0.08,
    "final/test/recall_at_20": 0.15,
    "served/policy/intra_list_diversity": 0.7,
    "served/policy/catalog_coverage": 0.4,
    "served/policy/exposure_gini": 0.7,
}


def registry_with_failed_version(uri: str, dataset, *, promote_first: bool = True) -> ModelRegistry:
    """v1 promoted through explorec (gates passed), v2 registered with gate.status failed."""
    mlflow.set_tracking_uri(uri)
    registry = ModelRegistry(uri)
    for seed in (0, 1):
        with mlflow.start_run() as run:
            mlflow.log_metrics(METRICS)
            log_recommender(tiny_bundle(dataset, seed=seed))
        registry.register_candidate(run.info.run_id, NAME)
    if promote_first:
        assert registry.promote(NAME, "1", GatesConfig(), actor="test").promoted
    registry.client.set_model_version_tag(NAME, "2", "gate.status", "failed")
    return registry


def test_restore_moves_the_alias_back_and_marks_the_version(tracking_uri: str, dataset) -> None:
    """An un-gated move is undone: champion back on v1, v2 tagged and warned about on its page."""
    client = registry_with_failed_version(tracking_uri, dataset).client
    assert guard_champion(client, NAME).action == "ok"
    client.set_registered_model_alias(NAME, "champion", "2")  # what the UI's alias editor does
    outcome = guard_champion(client, NAME)
    assert outcome.action == "restored" and outcome.champion == "1"
    assert "moved to v2 (gate status 'failed') outside `explorec promote`" in outcome.message
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
    version = client.get_model_version(NAME, "2")
    assert "restored to v1" in version.tags["promotion.unaudited_move"]
    assert version.description.startswith("> **⚠ @champion was moved to v2")
    assert guard_champion(client, NAME).action == "ok"


def test_record_keeps_the_move_as_an_audited_forced_promotion(tracking_uri: str, dataset) -> None:
    """With action record (or nothing to go back to), the move becomes a forced promotion on record."""
    client = registry_with_failed_version(tracking_uri, dataset).client
    client.set_registered_model_alias(NAME, "champion", "2")
    outcome = guard_champion(client, NAME, action="record")
    assert outcome.action == "recorded" and outcome.champion == "2"
    tags = client.get_model_version(NAME, "2").tags
    assert (
        tags["promotion.forced"] == "true" and tags["promotion.promoted_by"] == "unknown (outside explorec)"
    )
    assert refusal_reason(tags) is None
    assert "forced promotion by an unknown actor" in client.get_model_version(NAME, "2").description


def test_nothing_to_restore_records_instead(tmp_path: Path, dataset) -> None:
    """The first champion set around the gates has no gated predecessor: it is recorded."""
    uri = f"sqlite:///{tmp_path / 'first.db'}"
    client = registry_with_failed_version(uri, dataset, promote_first=False).client
    assert guard_champion(client, NAME).action == "no_champion"
    client.set_registered_model_alias(NAME, "champion", "2")
    assert guard_champion(client, NAME).action == "recorded"


def test_service_source_hands_an_ungated_move_to_the_guard(tracking_uri: str, dataset) -> None:
    """A running service notices the move at its next check, keeps serving v1, and the alias is restored."""
    from explorec.pipeline.service import RegistrySource

    client = registry_with_failed_version(tracking_uri, dataset).client
    source = RegistrySource(MlflowClient(tracking_uri), NAME, "champion", guard_action="restore")
    assert source.current().version == "1"
    client.set_registered_model_alias(NAME, "champion", "2")
    message = source.refresh() or ""
    assert "moved back to v1" in message and "still serving v1" in message
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"


def test_cli_commands_run_the_guard_first(
    isolated_home: Path, dataset, capsys: pytest.CaptureFixture[str]
) -> None:
    """`explorec promote --dry-run` after an un-gated move warns on stderr and compares with v1 restored."""
    from explorec.cli import main

    (isolated_home / "mlruns").mkdir()
    uri = f"sqlite:///{isolated_home / 'mlruns' / 'mlflow.db'}"
    client = registry_with_failed_version(uri, dataset).client
    client.set_registered_model_alias(NAME, "champion", "2")
    main(["promote", "--version", "2", "--dry-run"])
    captured = capsys.readouterr()
    assert "explorec: warning: @champion was moved to v2" in captured.err
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"


def test_a_promotion_cut_off_after_the_move_is_on_record_not_undone(tracking_uri: str, dataset) -> None:
    """A forced attempt recorded before the alias moved, killed before its closing tags, is left alone."""
    client = registry_with_failed_version(tracking_uri, dataset).client
    for key, value in {"outcome": "forced", "state": "started", "reason": "hotfix", "by": "alice"}.items():
        client.set_model_version_tag(NAME, "2", f"promotion.attempt.{key}", value)
    client.set_registered_model_alias(NAME, "champion", "2")
    assert guard_champion(client, NAME).action == "ok"
    client.set_model_version_tag(NAME, "2", "promotion.attempt.reason", "none")
    assert guard_champion(client, NAME).action == "restored"
