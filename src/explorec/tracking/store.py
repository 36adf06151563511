"""MLflow tracking: resolve the store once per flow, tag every run, flatten configs into params.

Opening a SQLite store (`configure_tracking`) is serialised across processes by an flock on
`<store>.lock`: MLflow creates and migrates a new store's schema without a lock, and two first runs at once
broke it for good. Under the lock a missing store is built whole in a scratch file and renamed into place,
so an existing `mlflow.db` is always complete; an empty (0 bytes) or unreadable one is therefore damage, and
opening it fails with one line naming the file (it is never silently replaced by an empty store). The first
open in a process also ends the runs that died with their process (`explorec.tracking.reaper`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from explorec.config import TrackingConfig, project_root
from explorec.errors import StoreError
from explorec.tracking.locks import exclusive_lock

MAX_PARAM_LENGTH = 6000
STORE_LOCK_TIMEOUT_S = 300.0
SQLITE_HEADER = b"SQLite format 3\x00"
_opened: set[str] = set()
"""Store URIs this process has opened (and swept for dead runs) already."""


@dataclass(frozen=True)
class TrackingTarget:
    """A resolved tracking store: absolute URI, experiment id and artifact location."""

    tracking_uri: str
    experiment_id: str
    artifact_location: str


def resolve_tracking_uri(uri: str) -> str:
    """Make a relative `sqlite:///path` absolute against the project root (other URIs pass unchanged)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri.startswith(prefix + "/"):
        return uri
    path = project_root() / uri.removeprefix(prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"{prefix}{path}"


def sqlite_file(uri: str) -> Path | None:
    """Return the database file of an absolute `sqlite:///` URI, or None for any other store."""
    prefix = "sqlite:///"
    return Path(uri.removeprefix(prefix)) if uri.startswith(prefix + "/") else None


def _lock_timeout(path: Path, timeout_s: float) -> StoreError:
    """Return the error of a store lock held too long by another process."""
    return StoreError(
        f"another process has held {path} for {timeout_s:g} s while opening the store; "
        "wait for it to finish and retry"
    )


@contextlib.contextmanager
def store_lock(database: Path, timeout_s: float = STORE_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the cross-process lock that serialises creating, migrating and first opening `database`."""
    with exclusive_lock(database.with_name(database.name + ".lock"), timeout_s, _lock_timeout):
        yield


def damaged_store(database: Path, problem: str) -> StoreError:
    """Return the one-line error of a store file that cannot be read."""
    return StoreError(
        f"{database} {problem}; restore it from a backup, or move it away to start a new, empty store"
    )


def check_sqlite_file(database: Path) -> None:
    """Fail with a StoreError when an existing store file is empty, not SQLite, or unreadable."""
    size = database.stat().st_size
    if size == 0:
        raise damaged_store(database, "is empty (0 bytes) although explorec only ever creates it whole")
    with database.open("rb") as handle:
        if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise damaged_store(database, "is not an SQLite database")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as error:
        raise damaged_store(database, f"is damaged ({error})") from error


def create_sqlite_store(database: Path, artifact_root: str) -> None:
    """Build a new store's whole schema in a scratch file, then rename it to `database` (atomic)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    scratch = database.with_name(f".{database.name}.creating-{os.getpid()}")
    scratch.unlink(missing_ok=True)
    try:
        store = SqlAlchemyStore(f"sqlite:///{scratch}", artifact_root)
        store.engine.dispose()
        os.replace(scratch, database)
    finally:
        scratch.unlink(missing_ok=True)


def _artifact_root(cfg: TrackingConfig) -> Path:
    """Return the configured artifact folder, absolute, created."""
    artifact_dir = Path(cfg.artifact_root)
    if not artifact_dir.is_absolute():
        artifact_dir = project_root() / artifact_dir
    artifact_dir.mkdir(parents=True, exist_ok=True)
    return artifact_dir


def _open_experiment(uri: str, cfg: TrackingConfig) -> Any:
    """Return the configured experiment, created when it is new (a first call also opens the stores)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name(cfg.experiment)
    if experiment is None:
        location = None if uri.startswith("http") else _artifact_root(cfg).as_uri()
        experiment_id = client.create_experiment(cfg.experiment, artifact_location=location)
        experiment = client.get_experiment(experiment_id)
    if uri not in _opened:
        client.search_registered_models(max_results=1)  # opens (and checks) the registry's store too
    return experiment


def _first_open_sqlite(uri: str, database: Path, cfg: TrackingConfig) -> Any:
    """Under the store lock: create the store whole if missing, check it, open it and the experiment."""
    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException

    with store_lock(database):
        if not database.exists():
            create_sqlite_store(database, _artifact_root(cfg).as_uri())
        check_sqlite_file(database)
        try:
            return _open_experiment(uri, cfg)
        except sqlalchemy.exc.DatabaseError as error:
            raise damaged_store(database, f"is damaged ({error.orig or error})") from error
        except MlflowException as error:
            if "out-of-date database schema" not in str(error):
                raise
            raise StoreError(
                f"{database} was written by an older MLflow; back it up, then run `mlflow db upgrade {uri}`"
            ) from error


def configure_tracking(cfg: TrackingConfig) -> TrackingTarget:
    """Point MLflow at the configured store and experiment, creating the experiment when it is new.

    The first call for a store in a process opens it under the store lock and ends the runs and logged
    models whose owner process died (`reaper.reap_dead_runs`).
    """
    import mlflow

    uri = resolve_tracking_uri(cfg.tracking_uri)
    mlflow.set_tracking_uri(uri)
    database = sqlite_file(uri)
    if database is not None and uri not in _opened:
        experiment = _first_open_sqlite(uri, database, cfg)
    else:
        experiment = _open_experiment(uri, cfg)
    if uri not in _opened:
        from explorec.tracking.reaper import reap_dead_runs

        reap_dead_runs(uri)
        _opened.add(uri)
    mlflow.set_experiment(experiment_id=experiment.experiment_id)
    return TrackingTarget(uri, experiment.experiment_id, experiment.artifact_location)


def git_commit() -> str:
    """Return the checkout's HEAD commit (with '-dirty' when there are uncommitted changes), or 'unknown'."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, check=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=source,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def run_tags(
    *, config_hash: str, data_fingerprint: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Return the tags every explorec run carries: git commit, config hash, data fingerprint, its owner.

    Inside a Prefect flow run, also the flow run's id and UI page (`explorec.tracking.links`).
    """
    from explorec.tracking.links import flow_run_tags
    from explorec.tracking.owner import owner_tags

    tags = {"git_commit": git_commit(), "config_hash": config_hash, "data_fingerprint": data_fingerprint}
    tags.update(flow_run_tags())
    tags.update(owner_tags())  # the run is created by this process (`tracked_run` re-stamps it where not)
    tags.update(extra or {})
    return tags


def flatten(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield (dotted key, leaf value) pairs of a nested mapping."""
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flatten(value, f"{name}.")
        else:
            yield name, value


def metric_name(name: str) -> str:
    """Return an MLflow-safe metric name: MLflow forbids '@', so `val/ndcg@10` becomes `val/ndcg_at_10`."""
    return name.replace("@", "_at_")


def metric_dict(metrics: Mapping[str, float], prefix: str = "") -> dict[str, float]:
    """Return metrics with MLflow-safe names under a namespace prefix such as `test/`."""
    return {metric_name(f"{prefix}{key}"): float(value) for key, value in metrics.items()}


def config_params(values: Mapping[str, Any]) -> dict[str, str]:
    """Return a nested config as MLflow params (dotted keys, string values within MLflow's length limit)."""
    return {key: str(value)[:MAX_PARAM_LENGTH] for key, value in flatten(values)}
