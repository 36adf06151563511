"""Flow `simulate`: preprocess (cached) → encode (cached) → interactive simulation → MLflow run.

The simulation is the subflow `simulate-units`: plan it here, run its units (every policy's episode in one
calibration × replication) on the configured task runner (`runner=local|dask`), then record one MLflow run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from explorec.config import from_dict
from flows.runner import on_runner, submit_units, unit_threads
from flows.steps import run_step

if TYPE_CHECKING:
    from explorec.simulation.simulate import SimulationPlan, SimulationUnit, UnitResult
    from explorec.simulation.tracked import PreparedSimulation


@task(name="prepare-simulation", cache_policy=NO_CACHE)
def prepare_task(config: dict[str, Any]) -> PreparedSimulation:
    """Load the data, build the world, obtain the recommender and plan the units."""
    from explorec.simulation.tracked import prepare_simulation

    return prepare_simulation(from_dict(config))


@task(name="simulate-unit", cache_policy=NO_CACHE)
def unit_task(plan: SimulationPlan, unit: SimulationUnit, episode_workers: int) -> UnitResult:
    """Every policy's episode in one calibration and replication (a pure function of plan and unit)."""
    from explorec.simulation.simulate import run_unit

    return run_unit(plan, unit, episode_workers=episode_workers)


@task(name="track-simulation", cache_policy=NO_CACHE)
def track_task(prepared: PreparedSimulation, results: list[UnitResult]) -> dict[str, Any]:
    """Assemble the tables and record the MLflow run; return the run's summary."""
    from explorec.simulation.tracked import track_simulation

    return track_simulation(prepared, results).to_summary()


@flow(name="simulate-units", log_prints=True)
def simulate_units_flow(config: dict[str, Any]) -> dict[str, Any]:
    """Plan the simulation, run its units on this flow's task runner, record the run."""
    prepared = prepare_task(config)
    plan = prepared.plan
    results = submit_units(
        unit_task, {"": plan}, {"": plan.units()}, phase="simulating", episode_workers=unit_threads(config)
    )
    return track_task(prepared, results[""])


def simulate_step(config: dict[str, Any]) -> dict[str, Any]:
    """The subflow `simulate-units` on the task runner the config chooses."""
    return on_runner(simulate_units_flow, config)(config)


@flow(name="simulate", log_prints=True)
def simulate_flow(overrides: list[str] | None = None) -> dict[str, Any]:
    """Judge exploration policies in the seeded semi-synthetic simulator (docs/design.md §6)."""
    return run_step(simulate_step, overrides, artifact="simulate", encode=True)
