"""From a training run to a gated registry version: train, package, simulate, register, gate, promote.

The steps pass run ids and version numbers, never models: `train_candidate` fits and tags the training run,
`package_run` packages the pyfunc recommender as a LoggedModel sourced from it (never reopening it),
`simulate_candidate` runs the interactive simulator for the candidate's own policy against its baselines
and logs the lift vs greedy_online (its own MLflow run),
`register_and_gate` registers the run with those metrics and records the gate decision (passing sets
`challenger`), `promote_version` moves `champion` under the registry's lock. `explorec.pipeline.cache`
finds earlier results of the same inputs so that a rerun skips these steps.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from explorec.config import ExplorecConfig
from explorec.pipeline.steps import (
    PackagedModel,
    PromotionOutcome,
    RegistrationOutcome,
    SimulationOutcome,
    TrainedCandidate,
)
from explorec.simulation.tracked import SIMULATION_CONTROL, SIMULATION_OUTCOME

if TYPE_CHECKING:
    import pandas as pd


def train_candidate(cfg: ExplorecConfig) -> TrainedCandidate:
    """Fit and evaluate the two-tower (one MLflow run), then tag the run with its reuse keys."""
    import mlflow

    from explorec.models.train import train_and_evaluate
    from explorec.pipeline.cache import CODE_VERSION_TAG, TRAINING_KEY_TAG, code_version, training_key

    code = code_version()
    training = train_and_evaluate(cfg)
    client = mlflow.MlflowClient(training.tracking_uri)
    client.set_tag(training.run_id, CODE_VERSION_TAG, code)
    client.set_tag(training.run_id, TRAINING_KEY_TAG, training_key(cfg))
    return TrainedCandidate(training, cache="miss")


def finished_run(client: Any, run_id: str) -> Any:
    """Return the run, or fail with a RegistryError when there is no such run or it did not finish."""
    from mlflow.exceptions import MlflowException

    from explorec.errors import RegistryError

    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise RegistryError(
            f"no run {run_id!r} in {client.tracking_uri}; pass the id of a finished training run "
            "(`explorec train` prints it)"
        ) from None
    if run.info.status != "FINISHED":
        raise RegistryError(
            f"run {run_id} is {run.info.status}, not FINISHED; register a training run that finished"
        )
    return run


def package_run(cfg: ExplorecConfig, run_id: str) -> PackagedModel:
    """Package the run's recommender as a pyfunc LoggedModel and log its served-slate metrics to the run.

    The finished training run is never reopened (a kill while packaging would leave it RUNNING): its
    served metrics are logged to it as they are, and the model is a LoggedModel created with the run as its
    source, owned by this process; it turns READY when complete, and one left PENDING by a killed process is
    ended FAILED by the next store open. Only READY models are registered or reused.
    """
    import mlflow
    from mlflow.entities import LoggedModelOutput, Metric

    from explorec.data.loading import load_dataset
    from explorec.models.fit import resolve_model_config
    from explorec.pipeline.cache import POLICY_KEY_TAG, policy_key
    from explorec.policies.spec import PolicySpec
    from explorec.serving.packaging import attach_index, bundle_from_run, log_index_report
    from explorec.serving.pyfunc import log_recommender
    from explorec.serving.served import served_metrics_for_bundle
    from explorec.tracking.owner import owner_tags
    from explorec.tracking.store import configure_tracking, metric_dict

    target = configure_tracking(cfg.tracking)
    client = mlflow.MlflowClient(target.tracking_uri)
    run = finished_run(client, run_id)
    dataset = load_dataset(cfg)
    model_cfg = resolve_model_config(cfg.model, cfg.split.name)
    bundle = bundle_from_run(
        run_id,
        dataset,
        model_cfg,
        PolicySpec.from_config(cfg.policy),
        tracking_uri=target.tracking_uri,
        encoder=cfg.encoder,
    )
    served = metric_dict(served_metrics_for_bundle(bundle, dataset, k=cfg.policy.slate_size, seed=cfg.seed))
    index = attach_index(bundle, cfg.registry.index, seed=cfg.seed)
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(key, value, now, 0) for key, value in served.items()])
    model = client.create_logged_model(
        run.info.experiment_id,
        name=cfg.registry.model_artifact,
        source_run_id=run_id,
        tags={POLICY_KEY_TAG: policy_key(cfg), **owner_tags()},
    )
    log_recommender(bundle, name=cfg.registry.model_artifact, model_id=model.model_id)
    log_index_report(client, run_id, model.model_id, index)
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
    return PackagedModel(run_id, served)


def register_and_gate(
    cfg: ExplorecConfig,
    run_id: str,
    *,
    extra_metrics: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
) -> RegistrationOutcome:
    """Register the run's packaged model, decide the gates against the champion, tag the version."""
    from explorec.pipeline.cache import GATES_HASH_TAG, gates_hash
    from explorec.pipeline.service import evaluate_candidate_on_logs
    from explorec.registry.comparison import log_gate_comparison
    from explorec.registry.promotion import ModelRegistry
    from explorec.tracking.store import configure_tracking

    target = configure_tracking(cfg.tracking)
    registry = ModelRegistry(target.tracking_uri, cfg.registry)
    name = cfg.tracking.registered_model
    version = registry.register_candidate(run_id, name, metrics=extra_metrics, tags=tags)
    _, ope = evaluate_candidate_on_logs(cfg, version)  # logged traffic: ope/* metrics for the ope_lift gate
    decision = registry.evaluate_gates(name, version, cfg.gates)
    log_gate_comparison(registry.client, name, version, decision, registry.champion_version(name))
    registry.client.set_model_version_tag(name, version, GATES_HASH_TAG, gates_hash(cfg.gates))
    return RegistrationOutcome(
        registered_model=name,
        version=version,
        gate_passed=decision.passed,
        gate_reasons=list(decision.reasons),
        decision_markdown=decision.to_markdown(),
        challenger=registry.alias_version(name, cfg.registry.challenger_alias),
        champion=registry.champion_version(name),
        cache="miss",
        ope=ope,
    )


def promote_version(
    cfg: ExplorecConfig,
    version: str | None,
    *,
    force: bool = False,
    reason: str | None = None,
    dry_run: bool = False,
    actor: str | None = None,
) -> PromotionOutcome:
    """Move `champion` to a version (default: the current challenger), re-checking the gates unless forced."""
    from explorec.errors import RegistryError
    from explorec.registry.promotion import ModelRegistry
    from explorec.tracking.store import configure_tracking

    target = configure_tracking(cfg.tracking)
    registry = ModelRegistry(target.tracking_uri, cfg.registry)
    name = cfg.tracking.registered_model
    chosen = version or registry.alias_version(name, cfg.registry.challenger_alias)
    if chosen is None and registry.champion_version(name) is None and not version:
        registry.model_version(name, "1")  # says so in one line when nothing is registered yet
    if chosen is None:
        raise RegistryError(f"{name} has no challenger (no version passed the gates); pass --version N")
    result = registry.promote(
        name, chosen, cfg.gates, force=force, reason=reason, dry_run=dry_run, actor=actor
    )
    return PromotionOutcome(
        registered_model=name,
        version=chosen,
        outcome=result.outcome,
        promoted=result.promoted,
        champion=registry.champion_version(name),
        gate_reasons=list(result.decision.reasons) if result.decision is not None else [],
        decision_markdown=result.decision.to_markdown() if result.decision is not None else "",
        interrupted=list(result.interrupted),
    )


def simulator_lift(comparisons: pd.DataFrame, label: str, gate_metric: str) -> dict[str, float]:
    """Return the policy's expected-click lift over greedy_online per calibration, and the gate's value.

    The gate's value (`gate_metric`) is the smallest lower 95% bound over the calibrations: the candidate
    must beat greedy_online in every simulated world. A NaN bound stays NaN (the gate then fails).
    """
    from explorec.errors import ExplorecError

    missing = ExplorecError(f"the simulation holds no comparison of {label} with {SIMULATION_CONTROL}")
    if comparisons.empty:
        raise missing
    rows = comparisons[
        (comparisons["metric"] == SIMULATION_OUTCOME)
        & (comparisons["control"] == SIMULATION_CONTROL)
        & (comparisons["policy"] == label)
    ]
    if rows.empty:
        raise missing
    metrics: dict[str, float] = {}
    for row in rows.itertuples(index=False):
        prefix = f"sim/{row.calibration}/"
        metrics[f"{prefix}lift"] = float(row.mean_difference)
        metrics[f"{prefix}lift_ci_low"] = float(row.ci_low)
        metrics[f"{prefix}lift_ci_high"] = float(row.ci_high)
        metrics[f"{prefix}p_holm"] = float(row.p_holm)
    metrics[gate_metric] = float(rows["ci_low"].min(skipna=False))
    return metrics


def simulate_candidate(cfg: ExplorecConfig, training_run_id: str) -> SimulationOutcome:
    """Simulate the candidate's policy against the baselines (its own MLflow run) and log its lift there.

    The lift is read from the simulation's comparisons table in memory (the run keeps it as a CSV artifact).
    """
    import mlflow

    from explorec.pipeline.cache import (
        CANDIDATE_RUN_TAG,
        CODE_VERSION_TAG,
        SIMULATION_KEY_TAG,
        code_version,
        simulation_key,
    )
    from explorec.simulation.runner import policy_label
    from explorec.simulation.tracked import candidate_simulation, simulate_and_track

    settings, reason = candidate_simulation(cfg)
    if settings is None:
        return SimulationOutcome.skipped_because(reason)
    code = code_version()
    tracked = simulate_and_track(replace(cfg, simulate=settings))
    run_id = tracked.run_id
    client = mlflow.MlflowClient(tracked.tracking_uri)
    label = policy_label(cfg.policy.name, cfg.policy.exploration_rate)
    metrics = simulator_lift(tracked.comparisons, label, cfg.gates.simulator_lift_metric)
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)
    client.set_tag(run_id, CANDIDATE_RUN_TAG, training_run_id)
    client.set_tag(run_id, CODE_VERSION_TAG, code)
    client.set_tag(run_id, SIMULATION_KEY_TAG, simulation_key(cfg, settings))  # last: marks it complete
    return SimulationOutcome(
        cache="miss",
        run_id=run_id,
        policy=label,
        control=SIMULATION_CONTROL,
        metrics=metrics,
        gate_metric=cfg.gates.simulator_lift_metric,
        recommender=tracked.world.get("recommender"),
        runtime_s=tracked.runtime_s,
    )
