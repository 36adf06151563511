"""Flow `pipeline`: preprocess → encode → train (or tune) → package → simulate → register → gate → promote.

Every step is a task over one library function and passes run ids and version numbers. Preprocessing and
encoding are cached by fingerprint; training, simulation and registration are reused when a finished run
(or version) of the same config, data and code exists (`explorec.pipeline.cache`), unless
`pipeline.force=true`. The simulation runs the candidate's own policy against greedy_online and the other
baselines; its lift interval is attached to the candidate, whose gate then needs its lower bound > 0.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, State

from explorec.config import from_dict, to_dict
from explorec.pipeline.config import load_config
from explorec.pipeline.report import (
    NOT_PROMOTED,
    not_promoted_reason,
    pipeline_markdown,
    serving_policy,
    without_decision,
)
from flows.common import IO_RETRIES
from flows.train import encode_task, preprocess_task
from flows.tune import tune_flow

if TYPE_CHECKING:
    from explorec.pipeline.steps import (
        PackagedModel,
        PromotionOutcome,
        RegistrationOutcome,
        SimulationOutcome,
        TrainedCandidate,
    )


@task(name="find-training-run", **IO_RETRIES)
def reuse_training_task(config: dict[str, Any]) -> TrainedCandidate | None:
    """Return a finished training run of the same config, data and code (None: train anew)."""
    from explorec.pipeline.cache import reuse_training

    return reuse_training(from_dict(config))


@task(name="fit-and-evaluate")
def train_task(config: dict[str, Any]) -> TrainedCandidate:
    """Fit the two-tower model, evaluate it, log and tag the MLflow run."""
    from explorec.pipeline.registration import train_candidate

    return train_candidate(from_dict(config))


@task(name="package-recommender", **IO_RETRIES)
def package_task(config: dict[str, Any], run_id: str) -> PackagedModel:
    """Log the pyfunc recommender into the training run and measure its served slates."""
    from explorec.pipeline.registration import package_run

    return package_run(from_dict(config), run_id)


@task(name="find-simulation", **IO_RETRIES)
def reuse_simulation_task(config: dict[str, Any]) -> SimulationOutcome | None:
    """Return a finished simulation of the same candidate settings, data and code (None: simulate)."""
    from explorec.pipeline.cache import reuse_simulation

    return reuse_simulation(from_dict(config))


@task(name="simulate-candidate")
def simulate_task(config: dict[str, Any], run_id: str) -> SimulationOutcome:
    """Simulate the candidate's policy against the baselines; return its lift over greedy_online."""
    from explorec.pipeline.registration import simulate_candidate

    return simulate_candidate(from_dict(config), run_id)


@task(name="find-registered-version", **IO_RETRIES)
def reuse_registration_task(
    config: dict[str, Any], run_id: str, simulation_run_id: str | None
) -> RegistrationOutcome | None:
    """Return the version registered from the same candidate and its decision (None: register)."""
    from explorec.pipeline.cache import reuse_registration

    return reuse_registration(from_dict(config), run_id, simulation_run_id)


@task(name="register-and-gate", **IO_RETRIES)
def register_task(config: dict[str, Any], run_id: str, simulation: SimulationOutcome) -> RegistrationOutcome:
    """Register the packaged model with its simulator lift and record the gate decision."""
    from explorec.pipeline.cache import (
        CANDIDATE_KEY_TAG,
        SIMULATION_RUN_TAG,
        candidate_key,
        packaged_model,
    )
    from explorec.pipeline.registration import register_and_gate

    cfg = from_dict(config)
    simulation_run_id = simulation.run_id
    newest = packaged_model(cfg, run_id)
    tags = {
        CANDIDATE_KEY_TAG: candidate_key(run_id, simulation_run_id, None if newest is None else newest[0]),
        SIMULATION_RUN_TAG: simulation_run_id or "none",
    }
    extra_metrics = None if simulation.skipped else simulation.metrics
    return register_and_gate(cfg, run_id, extra_metrics=extra_metrics, tags=tags)


@task(name="promote-champion", **IO_RETRIES)
def promote_task(config: dict[str, Any], version: str) -> PromotionOutcome:
    """Move `champion` to the version after re-checking the gates under the registry lock."""
    from explorec.pipeline.registration import promote_version

    return promote_version(from_dict(config), version, actor="explorec pipeline")


@flow(name="pipeline", log_prints=True)
def pipeline_flow(overrides: list[str] | None = None) -> dict[str, Any] | State:
    """Run the whole system once: data, model, simulation, registry decision and promotion.

    Returns the summary; when the candidate did not become champion, inside a Completed state named
    "Not promoted" (calling the flow still returns the summary; the UI shows the name).
    """
    from explorec.pipeline.cache import code_version
    from explorec.pipeline.prefect_home import mlflow_ui_url
    from explorec.pipeline.steps import SimulationOutcome
    from explorec.simulation.tracked import candidate_simulation
    from explorec.tuning.space import chosen_config

    cfg = load_config(overrides or [])
    config = to_dict(cfg)
    force, code = cfg.pipeline.force, code_version()
    preprocess_task(config)
    encode_task(config)
    search = None
    if cfg.pipeline.search:
        search = tune_flow(overrides=overrides)
        cfg = chosen_config(cfg, search)
        config = to_dict(cfg)
    new = "forced" if force else "miss"
    trained = None if force else reuse_training_task(config)
    if trained is None:
        trained = replace(train_task(config), cache=new)
    else:
        print(f"reused training run {trained.run_id} (cache hit)")
    run_id = trained.run_id
    served = trained.served if trained.packaged else package_task(config, run_id).served

    settings, reason = candidate_simulation(cfg)
    if settings is None:
        simulation = SimulationOutcome.skipped_because(reason)
        print(f"simulation skipped: {reason}")
    else:
        reused = None if force else reuse_simulation_task(config)
        if reused is not None:
            simulation = reused
            print(f"reused simulation run {simulation.run_id} (cache hit)")
        else:
            simulation = replace(simulate_task(config, run_id), cache=new)

    registration = None if force else reuse_registration_task(config, run_id, simulation.run_id)
    if registration is None:
        registration = replace(register_task(config, run_id, simulation), cache=new)
    else:
        print(
            f"reused registered version {registration.version} of {registration.registered_model}"
            f" (cache hit, no new version): gate {'passed' if registration.gate_passed else 'failed'}"
        )
    promotion = None
    if registration.champion == registration.version:
        pass  # already the champion: nothing to move
    elif cfg.pipeline.promote and registration.gate_passed:
        promotion = promote_task(config, registration.version)
    summary = {
        "run_id": run_id,
        "experiment_id": trained.training.experiment_id,
        "metrics": trained.training.metrics,
        "served": served,
        "policy": serving_policy(cfg.policy.name, cfg.policy.exploration_rate, served, search),
        "simulation": simulation.to_summary(),
        "registration": without_decision(registration.to_summary()),
        "promotion": None if promotion is None else without_decision(promotion.to_summary()),
        "champion": (promotion or registration).champion,
        "tracking_uri": trained.training.tracking_uri,
        "mlflow_ui_url": mlflow_ui_url(trained.training.tracking_uri),
        "search": None
        if search is None
        else {k: search[k] for k in ("study_name", "parent_run_id", "pareto_size")},
        "cache": {
            "training": trained.cache,
            "simulation": simulation.cache,
            "registration": registration.cache,
        },
        "code_version": code,
    }
    create_markdown_artifact(
        key="pipeline",
        markdown=pipeline_markdown(summary, registration.decision_markdown),
        description="explorec pipeline",
    )
    return outcome_state(summary, promote=cfg.pipeline.promote)


def outcome_state(summary: dict[str, Any], *, promote: bool) -> dict[str, Any] | State:
    """Return the summary, or a Completed state named "Not promoted" holding it, with a WARNING line why.

    A gate that failed is no error of the run (it Completed), but it must not look like a promotion:
    the run list and the run page show the state's name, the log the reasons.
    """
    reason = not_promoted_reason(summary, promote=promote)
    if reason is None:
        return summary
    get_run_logger().warning(reason)
    return Completed(name=NOT_PROMOTED, message=reason, data=summary)
