"""Flow `simulate`: preprocess (cached) → encode (cached) → interactive simulation → MLflow run."""

from __future__ import annotations

from typing import Any

from prefect import flow, task

from explorec.config import from_dict
from flows.steps import run_step


@task(name="simulate-policies")
def simulate_task(config: dict[str, Any]) -> dict[str, Any]:
    """Simulate every configured exploration policy and its baselines; return the run's summary."""
    from explorec.simulation.tracked import simulate_and_track

    return simulate_and_track(from_dict(config)).to_summary()


@flow(name="simulate", log_prints=True)
def simulate_flow(overrides: list[str] | None = None) -> dict[str, Any]:
    """Judge exploration policies in the seeded semi-synthetic simulator (docs/design.md §6)."""
    return run_step(simulate_task, overrides, artifact="simulate", encode=True)
