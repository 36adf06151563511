"""Before a command that reads or moves the champion: check the registry's champion (`registry.guard`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from explorec.registry.guard import GuardOutcome, guard_champion

if TYPE_CHECKING:
    from explorec.config import ExplorecConfig

SQLITE_PREFIX = "sqlite:///"


def guard_registry(cfg: ExplorecConfig) -> GuardOutcome | None:
    """Run the champion guard on the configured store; None when there is no store yet (nothing to guard)."""
    from mlflow import MlflowClient

    from explorec.tracking.store import configure_tracking, resolve_tracking_uri

    uri = resolve_tracking_uri(cfg.tracking.tracking_uri)
    if uri.startswith(SQLITE_PREFIX) and not Path(uri.removeprefix(SQLITE_PREFIX)).is_file():
        return None
    target = configure_tracking(cfg.tracking)
    client = MlflowClient(tracking_uri=target.tracking_uri)
    return guard_champion(
        client,
        cfg.tracking.registered_model,
        alias=cfg.registry.champion_alias,
        action=cfg.registry.unaudited_champion,
    )
