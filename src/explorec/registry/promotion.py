"""Registration and promotion: a thin adapter between the pure gate (`gates.decide`) and the MLflow registry.

Lifecycle of a candidate:
1. `register_candidate(run_id, name)` registers the run's logged pyfunc as a new version, tagged with git
   commit, config hash and data fingerprint, `gate.status` = pending; its metrics go to the version's
   record (`metrics.json` with its model, `explorec.registry.records`), not to tags.
2. `evaluate_gates(name, version, gates)` decides against the current champion, writes the decision table
   (Markdown + JSON) to the version's record and as the version's description, tags `gate.status` /
   `gate.reasons`, and moves the `challenger` alias to the version when it passed.
3. `promote(name, version, ...)` re-checks the gates against the champion of that moment (unless
   `force` with a `reason`) and moves the `champion` alias; the new champion is tagged with who/when/why,
   the replaced one with when it was replaced. `dry_run` only returns the decision.

Promotions of one registered model are serialised by an exclusive `fcntl.flock` on
`<lock_dir>/<name>.lock` (one machine; the lock is released by the OS if the process dies). Every attempt
that takes the lock is recorded as a registered-model tag `promotion.attempt.<id>` (JSON: version, actor,
forced, reason, process, state, outcome, reasons), and its latest state as version tags
`promotion.attempt.*`. The writes are ordered so that a crash at any point leaves an audited state:
1. the attempt is recorded `state: started` with the move it is about to make (who, when, forced, why,
   the champion it replaces) before the alias moves;
2. the alias moves (the one write that changes what serves), then the promotion tags are written;
3. the attempt is marked `finished` (or `failed`: an error after the move puts the old champion back).
An attempt left `started` by a process that died is reported by a dry run and settled by the next promotion
(under the lock): if the alias had moved, its promotion tags are completed; either way it is marked
`interrupted`.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from explorec.config.registry import GatesConfig, RegistryConfig
from explorec.errors import RegistryError
from explorec.registry.gates import Decision, decide
from explorec.registry.records import (
    DECISION_JSON,
    DECISION_MARKDOWN,
    record_uri,
    version_metrics,
    write_record_file,
    write_version_metrics,
)
from explorec.tracking.locks import exclusive_lock as file_lock
from explorec.tracking.owner import current_owner

if TYPE_CHECKING:
    from mlflow import MlflowClient

ATTEMPT_TAG_PREFIX = "promotion.attempt."
PROVENANCE_TAGS = ("git_commit", "config_hash", "data_fingerprint")
MAX_TAG_VALUE = 5000
MAX_DESCRIPTION = 5000


class PromotionError(RegistryError):
    """A promotion that cannot be attempted as asked (e.g. a forced promotion without a reason)."""


class PromotionLockTimeoutError(PromotionError):
    """Another promotion of the same model held the lock for longer than the timeout."""


@dataclass(frozen=True)
class PromotionResult:
    """What a promotion attempt did: the decision, the champion before and after, and the outcome."""

    name: str
    version: str
    outcome: str
    decision: Decision
    previous_champion: str | None
    champion: str | None
    forced: bool
    dry_run: bool
    attempt_id: str | None
    interrupted: tuple[str, ...] = ()

    @property
    def promoted(self) -> bool:
        """Whether this attempt moved the champion alias to `version`."""
        return self.outcome in ("promoted", "forced")


def utc_now() -> str:
    """Return the current UTC time as ISO 8601 with microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def decision_description(decision: Decision, champion: str | None) -> str:
    """The version page's description: the gate decision table first, where the page shows it unscrolled."""
    against = f"against champion v{champion}" if champion else "no champion to compare with"
    return (
        f"{decision.to_markdown()}\nDecided {utc_now()}, {against}. Only `explorec promote` moves "
        "`champion` with the gates re-checked; explorec undoes or records a move made around them."
    )[:MAX_DESCRIPTION]


def _promotion_lock_timeout(path: Path, timeout_s: float) -> PromotionLockTimeoutError:
    """Return the error of a promotion lock held too long by another promotion."""
    return PromotionLockTimeoutError(
        f"could not lock {path} within {timeout_s:g} s: another promotion is running; retry when it ends"
    )


@contextlib.contextmanager
def exclusive_lock(path: Path, timeout_s: float) -> Iterator[None]:
    """Hold the exclusive promotion lock `path`, waiting up to `timeout_s` seconds."""
    with file_lock(path, timeout_s, _promotion_lock_timeout):
        yield


class ModelRegistry:
    """Registers candidates, records gate decisions and moves the challenger/champion aliases."""

    def __init__(self, tracking_uri: str, cfg: RegistryConfig | None = None) -> None:
        from mlflow import MlflowClient

        self.cfg = cfg or RegistryConfig()
        self.client: MlflowClient = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    # -- reading ------------------------------------------------------------------------------------------
    def alias_version(self, name: str, alias: str) -> str | None:
        """Return the version an alias points to, or None when unset (or the model does not exist)."""
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            return None

    def champion_version(self, name: str) -> str | None:
        """Return the champion's version, or None when there is no champion yet."""
        return self.alias_version(name, self.cfg.champion_alias)

    def version_metrics(self, name: str, version: str) -> dict[str, float]:
        """Return the metrics recorded for a version (at registration, plus any evaluation added later)."""
        return version_metrics(self.client, self.client.get_model_version(name, version))

    # -- registration and gates ---------------------------------------------------------------------------
    def register_candidate(
        self,
        run_id: str,
        name: str,
        *,
        metrics: Mapping[str, float] | None = None,
        model_uri: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Register the run's logged model as a new version of `name` and return the version number.

        Tags: the run's git commit, config hash and data fingerprint, any extra `tags`, and `gate.status` =
        pending. Every metric of the run plus `metrics` (which win) goes to the version's metrics.json.
        """
        from mlflow.exceptions import MlflowException

        run = self.client.get_run(run_id)
        values = {**run.data.metrics, **(metrics or {})}
        version_tags = {key: run.data.tags[key] for key in PROVENANCE_TAGS if key in run.data.tags}
        version_tags.update(tags or {})
        version_tags["gate.status"] = "pending"
        with contextlib.suppress(MlflowException):
            if self._registered_model_missing(name):
                self.client.create_registered_model(name)
        source = model_uri or self.logged_model_uri(run_id)
        model_id = source.removeprefix("models:/") if source.startswith("models:/m-") else None
        version = self.client.create_model_version(
            name, source=source, run_id=run_id, tags=version_tags, model_id=model_id
        )
        write_version_metrics(self.client, version, values)
        return str(version.version)

    def logged_model_uri(self, run_id: str) -> str:
        """Return `models:/<model id>` of the run's latest complete (READY) model named `cfg.model_artifact`.

        A model still PENDING (being written, or left by a killed packaging) or FAILED is never used.
        """
        from mlflow.entities import LoggedModelStatus

        run = self.client.get_run(run_id)
        found = self.client.search_logged_models(
            experiment_ids=[run.info.experiment_id],
            filter_string=f"source_run_id = '{run_id}' AND name = '{self.cfg.model_artifact}'",
            order_by=[{"field_name": "creation_time", "ascending": False}],
        )
        ready = [model for model in found if model.status == LoggedModelStatus.READY]
        if not ready:
            raise PromotionError(
                f"run {run_id} has no complete logged model named {self.cfg.model_artifact!r}; "
                "package it first (`explorec register --run-id` does)"
            )
        return f"models:/{ready[0].model_id}"

    def _registered_model_missing(self, name: str) -> bool:
        """Whether no registered model `name` exists yet."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException:
            return True
        return False

    def decide_against_champion(
        self, name: str, version: str, gates: GatesConfig, *, metrics: Mapping[str, float] | None = None
    ) -> tuple[Decision, str | None]:
        """Return the gate decision for a version against the current champion, and the champion's version."""
        champion = self.champion_version(name)
        candidate = dict(metrics) if metrics is not None else self.version_metrics(name, version)
        reference = None if champion in (None, version) else self.version_metrics(name, champion)
        return decide(candidate, reference, gates), champion

    def evaluate_gates(
        self, name: str, version: str, gates: GatesConfig, *, metrics: Mapping[str, float] | None = None
    ) -> Decision:
        """Decide, record the decision with the version's model, tag `gate.*`; passing sets `challenger`."""
        decision, champion = self.decide_against_champion(name, version, gates, metrics=metrics)
        model_version = self.client.get_model_version(name, version)
        write_record_file(self.client, model_version, DECISION_MARKDOWN, decision.to_markdown())
        write_record_file(self.client, model_version, DECISION_JSON, decision.to_json())
        gate_tags = {
            "gate.status": decision.status,
            "gate.reasons": ("; ".join(decision.reasons) or "none")[:MAX_TAG_VALUE],
            "gate.checked_at": utc_now(),
            "gate.champion_version": champion or "none",
            "gate.decision": record_uri(self.client, model_version, DECISION_MARKDOWN)[:MAX_TAG_VALUE],
        }
        for key, value in gate_tags.items():
            self.client.set_model_version_tag(name, version, key, value)
        self.client.update_model_version(name, version, description=decision_description(decision, champion))
        if decision.passed:
            self._move_alias(name, self.cfg.challenger_alias, version)
        return decision

    def _move_alias(self, name: str, alias: str, version: str) -> None:
        """Point `alias` at `version` (the one write that changes what is served)."""
        self.client.set_registered_model_alias(name, alias, version)

    # -- promotion ----------------------------------------------------------------------------------------
    def lock_path(self, name: str) -> Path:
        """Return the lock file that serialises promotions of `name`."""
        from explorec.config import project_root

        folder = Path(self.cfg.lock_dir).expanduser()
        folder = folder if folder.is_absolute() else project_root() / folder
        safe = "".join(char if char.isalnum() or char in "-_." else "_" for char in name)
        return folder / f"{safe}.lock"

    def model_version(self, name: str, version: str) -> Any:
        """Return a registered version, or fail with one line saying which versions exist."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version(name, version)
        except MlflowException:
            pass
        if self._registered_model_missing(name):
            raise RegistryError(
                f"no model {name!r} is registered yet; `explorec register` or `explorec pipeline` makes one"
            )
        known = sorted(int(v.version) for v in self.client.search_model_versions(f"name = '{name}'"))
        listed = ", ".join(map(str, known)) or "none"
        raise RegistryError(f"{name} has no version {version} (versions: {listed}); pass one of them")

    def check_artifacts(self, name: str, version: str) -> None:
        """Fail with a RegistryError when a version's model files (its MLmodel) are gone."""
        import mlflow
        from mlflow.exceptions import MlflowException

        uri = self.client.get_model_version_download_uri(name, version)
        try:
            files = [entry.path for entry in mlflow.artifacts.list_artifacts(artifact_uri=uri)]
        except (MlflowException, OSError):
            files = []
        if not any(path.rsplit("/", 1)[-1] == "MLmodel" for path in files):
            raise RegistryError(
                f"{name} v{version} has no model files at {uri} (deleted?); register the training run "
                "again (`explorec register --run-id <run>`) and promote the new version"
            )

    def promote(
        self,
        name: str,
        version: str,
        gates: GatesConfig,
        *,
        force: bool = False,
        reason: str | None = None,
        dry_run: bool = False,
        actor: str | None = None,
    ) -> PromotionResult:
        """Move `champion` to `version` if it passes the gates against the current champion (or is forced)."""
        version = str(version)
        if force and not (reason and reason.strip()):
            raise PromotionError("a forced promotion needs a reason (--reason)")
        actor = actor or getpass.getuser()
        self.model_version(name, version)
        self.check_artifacts(name, version)
        if dry_run:
            decision, champion = self.decide_against_champion(name, version, gates)
            interrupted = tuple(
                f"attempt {record['attempt_id']} ({record.get('outcome')} of v{record.get('version')} by "
                f"{record.get('actor')}, {record.get('process')}) was interrupted; the next promotion "
                "settles it"
                for record in self.unfinished_attempts(name)
            )
            return PromotionResult(
                name, version, "dry_run", decision, champion, champion, force, True, None, interrupted
            )
        with exclusive_lock(self.lock_path(name), self.cfg.lock_timeout_s):
            settled = self.settle_interrupted(name)
            result = self._promote_locked(name, version, gates, force=force, reason=reason, actor=actor)
            return replace(result, interrupted=tuple(settled))

    def attempts(self, name: str) -> list[dict[str, Any]]:
        """Return every recorded promotion attempt of `name`, oldest first (unreadable records skipped)."""
        records = []
        for key, value in self.client.get_registered_model(name).tags.items():
            if key.startswith(ATTEMPT_TAG_PREFIX):
                with contextlib.suppress(ValueError):
                    records.append(json.loads(value))
        return sorted(records, key=lambda record: str(record.get("attempt_id")))

    def unfinished_attempts(self, name: str) -> list[dict[str, Any]]:
        """Return attempts still `started` whose process is gone (or unknown): they were interrupted."""
        from explorec.tracking.owner import owner_from_tags

        unfinished = []
        for record in self.attempts(name):
            if record.get("state") != "started":
                continue
            owner = owner_from_tags(record.get("owner") or {})
            if owner is None or owner.is_gone():
                unfinished.append(record)
        return unfinished

    def settle_interrupted(self, name: str) -> list[str]:
        """Settle attempts interrupted by a crash (caller holds the lock); return what was done, per attempt.

        The alias move is the commit point: an attempt whose version is champion now moved it, so its
        promotion tags are completed; one whose version is not champion moved nothing.
        """
        champion = self.champion_version(name)
        notes = []
        for record in self.unfinished_attempts(name):
            version = str(record.get("version"))
            moved = champion == version and record.get("outcome") in ("promoted", "forced")
            if moved:
                previous = record.get("previous_champion")
                self._tag_promotion(name, version, previous, record, str(record["outcome"]))
                note = f"v{version} became champion by attempt {record['attempt_id']}, cut off after the move"
            else:
                note = f"attempt {record['attempt_id']} for v{version} was cut off before the move"
            settled = {**record, "state": "interrupted", "settled_at": utc_now(), "settled": note}
            self._write_attempt(name, settled)
            notes.append(note + "; audit completed")
        return notes

    def _promote_locked(
        self, name: str, version: str, gates: GatesConfig, *, force: bool, reason: str | None, actor: str
    ) -> PromotionResult:
        """Decide and move the alias (the caller holds the lock), recording the attempt before and after."""
        attempt_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"
        owner = current_owner()
        record: dict[str, Any] = {"attempt_id": attempt_id, "version": version, "actor": actor}
        record.update({"forced": force, "reason": reason, "started_at": utc_now(), "state": "started"})
        record.update({"outcome": "pending", "process": owner.describe(), "owner": owner.tags()})
        moved_from: list[str | None] = []
        try:
            decision, previous = self.decide_against_champion(name, version, gates)
            record.update({"previous_champion": previous, "gate_status": decision.status})
            record["gate_reasons"] = decision.reasons
            if previous == version:
                outcome = "already_champion"
            elif decision.passed or force:
                outcome = "promoted" if decision.passed else "forced"
                record["outcome"] = outcome
                self._write_attempt(name, record)  # audited before anything moves
                self._move_alias(name, self.cfg.champion_alias, version)
                moved_from.append(previous)
                record["alias_moved_at"] = utc_now()
                self._tag_promotion(name, version, previous, record, outcome)
            else:
                outcome = "refused"
            record.update({"outcome": outcome, "state": "finished"})
            champion = version if outcome in ("promoted", "forced") else previous
            return PromotionResult(
                name, version, outcome, decision, previous, champion, force, False, attempt_id
            )
        except Exception as error:
            record.update({"state": "failed", "outcome": "error"})
            record["error"] = f"{type(error).__name__}: {error}"
            if moved_from:
                self._restore_champion(name, moved_from[0])
                record["rolled_back_to"] = moved_from[0] or "none"
            raise
        finally:
            record["finished_at"] = utc_now()
            self._write_attempt(name, record)

    def _restore_champion(self, name: str, previous: str | None) -> None:
        """Put the champion alias back where it was before a failed attempt moved it."""
        if previous is None:
            self.client.delete_registered_model_alias(name, self.cfg.champion_alias)
        else:
            self._move_alias(name, self.cfg.champion_alias, previous)

    def _write_attempt(self, name: str, record: Mapping[str, Any]) -> None:
        """Record an attempt's state on the model (JSON tag) and on its version (`promotion.attempt.*`)."""
        version = str(record["version"])
        tags = {
            "id": record["attempt_id"],
            "state": record["state"],
            "outcome": record["outcome"],
            "by": record["actor"],
            "at": record["started_at"],
            "forced": str(bool(record["forced"])).lower(),
            "reason": record.get("reason") or "none",
            "previous_champion": record.get("previous_champion") or "none",
            "process": record.get("process", "unknown"),
        }
        self._record_attempt(name, str(record["attempt_id"]), record)
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, f"{ATTEMPT_TAG_PREFIX}{key}", str(value))

    def _tag_promotion(
        self, name: str, version: str, previous: str | None, record: Mapping[str, object], outcome: str
    ) -> None:
        """Tag the new champion with who/when/why and the replaced one with when it was replaced."""
        now = utc_now()
        tags = {
            "promotion.promoted_at": now,
            "promotion.promoted_by": str(record["actor"]),
            "promotion.forced": str(outcome == "forced").lower(),
            "promotion.reason": str(record["reason"] or "passed the gates"),
            "promotion.gate_status": str(record["gate_status"]),
            "promotion.replaced_version": previous or "none",
            "promotion.attempt_id": str(record["attempt_id"]),
        }
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, value[:MAX_TAG_VALUE])
        if previous is not None:
            self.client.set_model_version_tag(name, previous, "promotion.replaced_at", now)
            self.client.set_model_version_tag(name, previous, "promotion.replaced_by_version", version)

    def _record_attempt(self, name: str, attempt_id: str, record: Mapping[str, object]) -> None:
        """Store one attempt as a registered-model tag (JSON, truncated to MLflow's tag size)."""
        value = json.dumps(record, default=str)
        if len(value) > MAX_TAG_VALUE:
            value = json.dumps({**record, "gate_reasons": ["(truncated)"]}, default=str)[:MAX_TAG_VALUE]
        self.client.set_registered_model_tag(name, f"{ATTEMPT_TAG_PREFIX}{attempt_id}", value)
