"""Flow `study`: preprocess, encode (each rung), encoder ladder × policy × rate × world × truth, MLflow run.

The grid is the subflow `study-units`: plan one simulation per cell (world × ground truth × encoder, plus the
churn goal's selection cells) here, run every cell × calibration × replication unit on the configured task
runner (`runner=local|dask`), then record one MLflow run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from explorec.config import from_dict, to_dict
from explorec.pipeline.config import load_config
from flows.runner import on_runner, submit_units, unit_threads
from flows.simulate import unit_task
from flows.train import encode_task, preprocess_task

if TYPE_CHECKING:
    from explorec.simulation.simulate import UnitResult
    from explorec.simulation.tracked import PreparedStudy


@task(name="prepare-study", cache_policy=NO_CACHE)
def prepare_task(configs: dict[str, dict[str, Any]]) -> PreparedStudy:
    """Load the data, build each world, obtain every rung's recommender per world and plan every cell."""
    from explorec.simulation.tracked import prepare_study

    return prepare_study({encoder: from_dict(config) for encoder, config in configs.items()})


@task(name="track-study", cache_policy=NO_CACHE)
def track_task(prepared: PreparedStudy, results: dict[str, list[UnitResult]]) -> dict[str, Any]:
    """Assemble the study's tables and answer and record the MLflow run; return its summary."""
    from explorec.simulation.tracked import track_study

    return track_study(prepared, results)


@flow(name="study-units", log_prints=True)
def study_units_flow(configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Plan every cell's simulation, run all their units on this flow's task runner, record the run."""
    prepared = prepare_task(configs)
    plans = prepared.plans
    threads = unit_threads(next(iter(configs.values())))
    units = {cell: plan.units() for cell, plan in plans.items()}
    return track_task(
        prepared, submit_units(unit_task, plans, units, phase="study units", episode_workers=threads)
    )


def encoder_overrides(overrides: list[str], encoder: str) -> list[str]:
    """The overrides with the encoder group set to `encoder` (any other choice of the group dropped)."""
    return [item for item in overrides if not item.startswith("encoder=")] + [f"encoder={encoder}"]


@flow(name="study", log_prints=True)
def study_flow(overrides: list[str] | None = None) -> dict[str, Any]:
    """How the item tower's language model (an encoder ladder) changes discovery and reward at equal cost."""
    overrides = list(overrides or [])
    cfg = load_config(overrides)
    configs = {
        encoder: to_dict(load_config(encoder_overrides(overrides, encoder))) for encoder in cfg.study.encoders
    }
    preprocess_task(to_dict(cfg))
    for config in configs.values():
        encode_task(config)
    summary = on_runner(study_units_flow, to_dict(cfg))(configs)
    create_markdown_artifact(key="study", markdown=summary["markdown"], description="explorec study")
    return summary
