"""Flow `benchmark`: baselines and the two-tower (per encoder) on one split, compared in one table."""

from __future__ import annotations

from typing import Any

from prefect import flow, task

from explorec.config import from_dict
from flows.steps import run_step


@task(name="run-benchmark")
def benchmark_task(config: dict[str, Any]) -> dict[str, Any]:
    """Run every baseline and the two-tower through one harness; return the comparison table."""
    from explorec.pipeline.benchmark import run_benchmark

    return run_benchmark(from_dict(config))


@flow(name="benchmark", log_prints=True)
def benchmark_flow(overrides: list[str] | None = None) -> dict[str, Any]:
    """Compare Popularity, ItemKNN, EASE, ALS and the two-tower (minilm and none) on one split."""
    return run_step(benchmark_task, overrides, artifact="benchmark")
