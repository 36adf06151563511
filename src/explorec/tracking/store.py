"""MLflow tracking: resolve the store once per flow, tag every run, flatten configs into params."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from explorec.config import TrackingConfig, project_root

MAX_PARAM_LENGTH = 6000


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


def configure_tracking(cfg: TrackingConfig) -> TrackingTarget:
    """Point MLflow at the configured store and experiment, creating the experiment when it is new."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = resolve_tracking_uri(cfg.tracking_uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(cfg.experiment)
    if experiment is None:
        location = None
        if not uri.startswith("http"):
            artifact_dir = Path(cfg.artifact_root)
            if not artifact_dir.is_absolute():
                artifact_dir = project_root() / artifact_dir
            artifact_dir.mkdir(parents=True, exist_ok=True)
            location = artifact_dir.as_uri()
        experiment_id = client.create_experiment(cfg.experiment, artifact_location=location)
        experiment = client.get_experiment(experiment_id)
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
    """Return the tags every explorec run carries: git commit, config hash, data fingerprint."""
    tags = {"git_commit": git_commit(), "config_hash": config_hash, "data_fingerprint": data_fingerprint}
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
