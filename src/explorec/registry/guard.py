"""The champion guard: notices `champion` moved around the gates (MLflow UI, REST API, a script) and acts.

A champion may serve when its gates passed or its forced promotion is on record (`servable.refusal_reason`).
Anything else got there without `explorec promote`. The guard then, per `registry.unaudited_champion`:
- `restore` (default): moves the alias back to the last champion that may serve (the newest by
  `promotion.promoted_at`) and marks the version with what happened;
- `record`: keeps it, recording the move as a forced promotion by an unknown actor, with a warning at the
  top of the version's description (the MLflow UI shows it on the version page).
Without an earlier servable champion, `restore` records instead (there is nothing to go back to). The guard
runs before every explorec command that opens the registry and in the service whenever the alias moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from explorec.registry.servable import FORCE_REASON_TAG, FORCED_TAG, GATE_STATUS_TAG, refusal_reason

if TYPE_CHECKING:
    from mlflow import MlflowClient

PROMOTED_AT_TAG = "promotion.promoted_at"
DETECTED_TAG = "promotion.unaudited_move"
UNAUDITED_ACTIONS = ("restore", "record")


@dataclass(frozen=True)
class GuardOutcome:
    """What the guard found and did: `ok`, `no_champion`, `restored` or `recorded`, and a line to show."""

    action: str
    champion: str | None
    message: str = ""


def _now() -> str:
    """UTC now, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def last_servable_champion(client: MlflowClient, name: str, *, besides: str) -> str | None:
    """The newest version promoted through explorec that may serve, other than `besides`."""
    promoted = []
    for version in client.search_model_versions(f"name = '{name}'"):
        tags = version.tags or {}
        if str(version.version) != besides and PROMOTED_AT_TAG in tags and refusal_reason(tags) is None:
            promoted.append((tags[PROMOTED_AT_TAG], int(version.version)))
    return str(max(promoted)[1]) if promoted else None


def _warn_on_page(client: MlflowClient, name: str, version: str, warning: str) -> None:
    """Put a warning line at the top of the version's description (Markdown in the MLflow UI)."""
    description = client.get_model_version(name, version).description or ""
    client.update_model_version(name, version, description=f"> **⚠ {warning}**\n\n{description}".strip())


def guard_champion(
    client: MlflowClient, name: str, *, alias: str = "champion", action: str = "restore"
) -> GuardOutcome:
    """Check the alias' version and restore or record an un-gated move; returns what was done."""
    from mlflow.exceptions import MlflowException

    if action not in UNAUDITED_ACTIONS:
        raise ValueError(f"action must be one of {UNAUDITED_ACTIONS}, got {action!r}")
    try:
        version = str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return GuardOutcome("no_champion", None)
    tags = client.get_model_version(name, version).tags or {}
    if refusal_reason(tags) is None:
        return GuardOutcome("ok", version)
    status, now = tags.get(GATE_STATUS_TAG, "missing"), _now()
    moved = f"@{alias} was moved to v{version} (gate status {status!r}) outside `explorec promote`"
    previous = last_servable_champion(client, name, besides=version) if action == "restore" else None
    if previous is not None:
        client.set_registered_model_alias(name, alias, previous)
        client.set_model_version_tag(
            name, version, DETECTED_TAG, f"detected {now}; @{alias} restored to v{previous}"
        )
        _warn_on_page(client, name, version, f"{moved}; detected {now} and moved back to v{previous}.")
        return GuardOutcome(
            "restored", previous, f"{moved}; moved back to v{previous}, the last gated champion"
        )
    for key, value in {
        FORCED_TAG: "true",
        FORCE_REASON_TAG: f"moved outside explorec promote (detected {now})",
        "promotion.promoted_by": "unknown (outside explorec)",
        PROMOTED_AT_TAG: now,
        "promotion.gate_status": status,
        DETECTED_TAG: f"detected {now}; recorded as a forced promotion",
    }.items():
        client.set_model_version_tag(name, version, key, value)
    _warn_on_page(
        client, name, version, f"{moved}; recorded {now} as a forced promotion by an unknown actor."
    )
    return GuardOutcome(
        "recorded", version, f"{moved}; recorded as a forced promotion (no gated champion before it)"
    )
