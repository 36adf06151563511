"""A registered version's own files: its metrics (`metrics.json`) and gate decision (`decision.md`/`.json`).

They live with the model the version points at — the LoggedModel's artifacts, under
`registry/<name>/v<version>/` — so the version page's model link leads to them, and one model registered
twice keeps each version's record apart. A version registered from a plain run URI (no LoggedModel) keeps
them in that run's artifacts, same folder. The version itself carries only a handful of tags (provenance,
`gate.*`); its metrics were once ~70 `metric.*` tags, which `version_metrics` still reads for versions
registered before.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.json"
DECISION_MARKDOWN = "decision.md"
DECISION_JSON = "decision.json"
LEGACY_METRIC_TAG_PREFIX = "metric."


def record_folder(name: str, version: str) -> str:
    """Return the artifact folder of a version's record, relative to its model (or run)."""
    safe = "".join(char if char.isalnum() or char in "-_." else "_" for char in name)
    return f"registry/{safe}/v{version}"


def _model_id(model_version: Any) -> str | None:
    """Return the LoggedModel id a version points at (None for a version made from a run URI)."""
    model_id = getattr(model_version, "model_id", None)
    if model_id:
        return str(model_id)
    source = str(getattr(model_version, "source", "") or "")
    return source.removeprefix("models:/") if source.startswith("models:/m-") else None


def record_uri(client: Any, model_version: Any, filename: str) -> str:
    """Return the artifact URI of one file of a version's record (where the MLflow UI shows it)."""
    folder = record_folder(model_version.name, str(model_version.version))
    model_id = _model_id(model_version)
    if model_id is not None:
        location = client.get_logged_model(model_id).artifact_location
    else:
        location = client.get_run(model_version.run_id).info.artifact_uri
    return f"{str(location).rstrip('/')}/{folder}/{filename}"


def write_record_file(client: Any, model_version: Any, filename: str, text: str) -> None:
    """Write (or replace) one file of a version's record."""
    folder = record_folder(model_version.name, str(model_version.version))
    model_id = _model_id(model_version)
    if model_id is None:
        client.log_text(model_version.run_id, text, f"{folder}/{filename}")
        return
    with tempfile.TemporaryDirectory() as scratch:
        local = Path(scratch) / filename
        local.write_text(text)
        client.log_model_artifact(model_id, str(local), folder)


def read_record_file(client: Any, model_version: Any, filename: str) -> str | None:
    """Return the text of one file of a version's record, or None when it has none."""
    import mlflow
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as scratch:
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=record_uri(client, model_version, filename),
                dst_path=scratch,
                tracking_uri=client.tracking_uri,
            )
        except (MlflowException, OSError):
            return None
        path = Path(local)
        return path.read_text() if path.is_file() else None


def metrics_json(metrics: Mapping[str, float]) -> str:
    """Return metrics as the record's JSON (MLflow-safe names, sorted; NaN and infinities as null)."""
    from explorec.tracking.store import metric_name

    values = {metric_name(key): float(value) for key, value in metrics.items()}
    cleaned = {key: value if math.isfinite(value) else None for key, value in sorted(values.items())}
    return json.dumps(cleaned, indent=1) + "\n"


def metrics_from_json(text: str) -> dict[str, float]:
    """Return the metrics of a record's JSON (null reads as NaN: a missing value fails its gate)."""
    return {key: float("nan") if value is None else float(value) for key, value in json.loads(text).items()}


def legacy_metrics_from_tags(tags: Mapping[str, str]) -> dict[str, float]:
    """Return the metrics of a version registered before records existed (`metric.*` tags)."""
    metrics = {}
    for key, value in tags.items():
        if key.startswith(LEGACY_METRIC_TAG_PREFIX):
            try:
                metrics[key.removeprefix(LEGACY_METRIC_TAG_PREFIX)] = float(value)
            except ValueError:
                metrics[key.removeprefix(LEGACY_METRIC_TAG_PREFIX)] = float("nan")
    return metrics


def version_metrics(client: Any, model_version: Any) -> dict[str, float]:
    """Return a version's recorded metrics (its metrics.json; older versions: their `metric.*` tags)."""
    text = read_record_file(client, model_version, METRICS_FILE)
    if text is None:
        return legacy_metrics_from_tags(model_version.tags)
    return metrics_from_json(text)


def write_version_metrics(client: Any, model_version: Any, metrics: Mapping[str, float]) -> None:
    """Record a version's metrics (replacing the file: callers merge what they add)."""
    write_record_file(client, model_version, METRICS_FILE, metrics_json(metrics))
