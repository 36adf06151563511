"""Pipeline reuse: find the finished training run, simulation and registered version of the same inputs.

A step is reused only when everything that could change its result is unchanged:
- code version: a hash of the explorec package's and the flows' Python source plus the versions of the
  numerical libraries (the `git_commit` tag cannot tell two different uncommitted trees apart);
- data fingerprint: the processed tables' fingerprint (input file hashes + data/split config);
- training key: the resolved config without the sections that cannot change the trained model (serving
  policy, pipeline switches, gates, simulator, replay, benchmark, search, tracking, paths, task runner,
  progress bars, data folders);
- policy key: the serving policy section; a training run is packaged again (a new logged model, its served
  metrics logged anew) when its newest packaged model was made for another policy, so a change of policy
  alone never retrains;
- simulation key: the training key plus the simulator settings the pipeline runs (the candidate's policy
  among them);
- candidate key: the training run, the simulation run (or none) and the packaged model a registered version
  was made from.

Keys are written as tags on the runs and versions once they are complete (the last write of a step), so an
interrupted step is never reused. The lookups are MLflow searches; the stores stay the only source of truth.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
from collections.abc import Iterator
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from explorec.config import ExplorecConfig, config_hash, to_dict
from explorec.pipeline.steps import RegistrationOutcome, SimulationOutcome, TrainedCandidate

CODE_VERSION_TAG = "explorec.code_version"
TRAINING_KEY_TAG = "explorec.training_key"
SIMULATION_KEY_TAG = "explorec.simulation_key"
CANDIDATE_KEY_TAG = "explorec.candidate_key"
CANDIDATE_RUN_TAG = "explorec.candidate_run_id"
SIMULATION_RUN_TAG = "explorec.simulation_run_id"
GATES_HASH_TAG = "explorec.gates_hash"
POLICY_KEY_TAG = "explorec.policy_key"

UNRELATED_SECTIONS = (
    "policy",
    "pipeline",
    "gates",
    "simulate",
    "study",
    "replay",
    "benchmark",
    "tune",
    "tracking",
    "paths",
    "runner",
)
UNRELATED_FIELDS = {
    "trainer": ("enable_progress_bar",),
    "encoder": ("show_progress",),
    "data": ("data_dir", "cache_dir", "allow_download"),
}
LIBRARIES = ("torch", "lightning", "numpy", "scipy", "pandas", "sentence-transformers")


def _source_files() -> list[tuple[str, Path]]:
    """Return (label, path) of every Python file of the explorec package and of the `flows` package."""
    import explorec

    roots = [("explorec", Path(explorec.__file__).resolve().parent)]
    flows = importlib.util.find_spec("flows")
    if flows is not None and flows.origin:
        roots.append(("flows", Path(flows.origin).resolve().parent))
    files = []
    for label, root in roots:
        files += [
            (f"{label}/{path.relative_to(root)}", path)
            for path in sorted(root.rglob("*.py"))
            if "__pycache__" not in path.parts
        ]
    return files


def code_version() -> str:
    """Return a short hash of the package source and the numerical libraries' versions."""
    digest = hashlib.sha256()
    for label, path in _source_files():
        digest.update(label.encode() + b"\0" + path.read_bytes() + b"\0")
    for library in LIBRARIES:
        try:
            version = metadata.version(library)
        except metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{library}=={version}\0".encode())
    return "src-" + digest.hexdigest()[:16]


def training_key(cfg: ExplorecConfig) -> str:
    """Return the hash of the config parts that shape the trained and packaged model."""
    values = {key: value for key, value in to_dict(cfg).items() if key not in UNRELATED_SECTIONS}
    for section, fields in UNRELATED_FIELDS.items():
        values[section] = {key: value for key, value in values[section].items() if key not in fields}
    return config_hash(values)


def simulation_key(cfg: ExplorecConfig, simulate: Any) -> str:
    """Return the hash of what a candidate's simulation depends on: its model config and the simulator's."""
    return config_hash({"training": training_key(cfg), "simulate": asdict(simulate)})


def policy_key(cfg: ExplorecConfig) -> str:
    """Return the hash of the serving policy a packaged model was made for."""
    return config_hash(asdict(cfg.policy))


def candidate_key(training_run_id: str, simulation_run_id: str | None, model_id: str | None = None) -> str:
    """Return the hash that names a registered candidate: training run, simulation run, packaged model."""
    return config_hash(
        {
            "training_run": training_run_id,
            "simulation_run": simulation_run_id or "none",
            "model": model_id or "none",
        }
    )


def packaged_model(cfg: ExplorecConfig, training_run_id: str) -> tuple[str, str | None] | None:
    """Return (model id, its policy key) of the run's newest packaged model, or None when it has none."""
    from explorec.registry.promotion import ModelRegistry, PromotionError
    from explorec.tracking.store import configure_tracking

    registry = ModelRegistry(configure_tracking(cfg.tracking).tracking_uri, cfg.registry)
    try:
        uri = registry.logged_model_uri(training_run_id)
    except PromotionError:
        return None
    model_id = uri.removeprefix("models:/")
    return model_id, registry.client.get_logged_model(model_id).tags.get(POLICY_KEY_TAG)


def gates_hash(gates: Any) -> str:
    """Return the hash of the gate thresholds a decision was made under."""
    return config_hash(asdict(gates))


def _quote(value: str) -> str:
    """Return a value quoted for an MLflow filter string (single quotes escaped)."""
    return "'" + value.replace("'", "\\'") + "'"


def find_finished_run(client: Any, experiment_id: str, tags: dict[str, str]) -> Any | None:
    """Return the newest FINISHED run of the experiment carrying every tag in `tags`, or None."""
    clauses = [f"tags.`{key}` = {_quote(value)}" for key, value in tags.items()]
    clauses.append("attributes.status = 'FINISHED'")
    runs = client.search_runs(
        [experiment_id],
        filter_string=" and ".join(clauses),
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def find_version(client: Any, name: str, training_run_id: str, key: str) -> Any | None:
    """Return the newest version of `name` registered from the run with this candidate key, or None."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(
            f"name = {_quote(name)} and run_id = {_quote(training_run_id)}"
        )
    except MlflowException:
        return None
    matching = [version for version in versions if version.tags.get(CANDIDATE_KEY_TAG) == key]
    return max(matching, key=lambda version: int(version.version), default=None)


@contextlib.contextmanager
def _no_download_progress_bar() -> Iterator[None]:
    """Switch MLflow's artifact download progress bar off while reading one small artifact."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def artifact_text(client: Any, run_id: str, path: str) -> str | None:
    """Return the text of a run's artifact, or None when the run has no such artifact."""
    import tempfile

    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as scratch, _no_download_progress_bar():
        try:
            local = client.download_artifacts(run_id, path, scratch)
        except (MlflowException, OSError):
            return None
        return Path(local).read_text() if Path(local).is_file() else None


def _nested_metrics(flat: dict[str, float]) -> dict[str, dict[str, float]]:
    """Return {"test": {"ndcg@10": ...}} from a run's `final/test/ndcg_at_10` metrics."""
    nested: dict[str, dict[str, float]] = {}
    for key, value in flat.items():
        if key.startswith("final/") and key.count("/") == 2:
            _, evaluation, metric = key.split("/")
            nested.setdefault(evaluation, {})[metric.replace("_at_", "@")] = value
    return nested


def reuse_training(cfg: ExplorecConfig) -> TrainedCandidate | None:
    """Return the finished training run of the same config, data and code, or None."""
    import json

    import mlflow

    from explorec.data.loading import load_dataset
    from explorec.models.train import TrainingResult
    from explorec.tracking.store import configure_tracking

    target = configure_tracking(cfg.tracking)
    client = mlflow.MlflowClient(target.tracking_uri)
    wanted = {
        TRAINING_KEY_TAG: training_key(cfg),
        CODE_VERSION_TAG: code_version(),
        "data_fingerprint": load_dataset(cfg).fingerprint,
    }
    run = find_finished_run(client, target.experiment_id, wanted)
    if run is None:
        return None
    run_id = run.info.run_id
    stored = artifact_text(client, run_id, "metrics.json")
    metrics = json.loads(stored) if stored else _nested_metrics(run.data.metrics)
    served = {key: value for key, value in run.data.metrics.items() if key.startswith("served/")}
    newest = packaged_model(cfg, run_id)
    packaged = bool(served) and newest is not None and newest[1] == policy_key(cfg)
    training = TrainingResult.of_run(
        cfg,
        target,
        run_id,
        epochs_run=int(run.data.metrics.get("train/epochs_run", 0)),
        fit_time_s=run.data.metrics.get("time/fit_s", float("nan")),
        metrics=metrics,
    )
    return TrainedCandidate(training, cache="hit", packaged=packaged, served=served)


def reuse_simulation(cfg: ExplorecConfig) -> SimulationOutcome | None:
    """Return a finished pipeline simulation of the same settings, data and code, or None.

    Its lift is read from the run's logged `sim/` metrics and the gate's metric.
    """
    import mlflow

    from explorec.data.loading import load_dataset
    from explorec.simulation.runner import policy_label
    from explorec.simulation.tracked import SIMULATION_CONTROL, candidate_simulation
    from explorec.tracking.store import configure_tracking

    settings, _ = candidate_simulation(cfg)
    if settings is None:
        return None
    target = configure_tracking(cfg.tracking)
    client = mlflow.MlflowClient(target.tracking_uri)
    wanted = {
        SIMULATION_KEY_TAG: simulation_key(cfg, settings),
        CODE_VERSION_TAG: code_version(),
        "data_fingerprint": load_dataset(cfg).fingerprint,
    }
    run = find_finished_run(client, target.experiment_id, wanted)
    gate_metric = cfg.gates.simulator_lift_metric
    if run is None or gate_metric not in run.data.metrics:
        return None
    return SimulationOutcome(
        cache="hit",
        run_id=run.info.run_id,
        policy=policy_label(cfg.policy.name, cfg.policy.exploration_rate),
        control=SIMULATION_CONTROL,
        metrics={key: value for key, value in run.data.metrics.items() if key.startswith("sim/")}
        | {gate_metric: run.data.metrics[gate_metric]},
        gate_metric=gate_metric,
        recommender=None,
        runtime_s=run.data.metrics.get("time/simulate_s"),
    )


def reuse_registration(
    cfg: ExplorecConfig, training_run_id: str, simulation_run_id: str | None
) -> RegistrationOutcome | None:
    """Return the version registered from the same candidate and its decision, or None when there is none.

    The recorded decision is reported as it stands when it was made under the same gates and the champion
    it was compared with is still the champion (or the version is the champion itself); otherwise the gates
    are decided again on the existing version (a cheap registry write; no new version).
    """
    import json

    from explorec.registry.comparison import log_gate_comparison
    from explorec.registry.promotion import ModelRegistry
    from explorec.registry.records import DECISION_JSON, DECISION_MARKDOWN, read_record_file
    from explorec.tracking.store import configure_tracking

    target = configure_tracking(cfg.tracking)
    registry = ModelRegistry(target.tracking_uri, cfg.registry)
    name = cfg.tracking.registered_model
    newest = packaged_model(cfg, training_run_id)
    key = candidate_key(training_run_id, simulation_run_id, None if newest is None else newest[0])
    found = find_version(registry.client, name, training_run_id, key)
    if found is None:
        return None
    version, tags = str(found.version), found.tags
    champion = registry.champion_version(name)
    compared_with = tags.get("gate.champion_version")
    stored = read_record_file(registry.client, found, DECISION_JSON)
    markdown = read_record_file(registry.client, found, DECISION_MARKDOWN)
    current = (
        tags.get(GATES_HASH_TAG) == gates_hash(cfg.gates)
        and tags.get("gate.status") in ("passed", "failed")
        and champion in (version, None if compared_with == "none" else compared_with)
        and stored is not None
        and markdown is not None
    )
    if current:
        decision = json.loads(str(stored))
        passed, reasons, cache = bool(decision["passed"]), list(decision["reasons"]), "hit"
    else:
        checked = registry.evaluate_gates(name, version, cfg.gates)
        log_gate_comparison(registry.client, name, version, checked, registry.champion_version(name))
        registry.client.set_model_version_tag(name, version, GATES_HASH_TAG, gates_hash(cfg.gates))
        passed, reasons, markdown = checked.passed, list(checked.reasons), checked.to_markdown()
        cache = "hit (gates decided again)"
    return RegistrationOutcome(
        registered_model=name,
        version=version,
        gate_passed=passed,
        gate_reasons=reasons,
        decision_markdown=str(markdown),
        challenger=registry.alias_version(name, cfg.registry.challenger_alias),
        champion=registry.champion_version(name),
        cache=cache,
    )
