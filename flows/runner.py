"""Prefect's task runner for a flow's independent units, chosen by the `runner` config group.

`runner=local` (default): Prefect's thread-pool runner with one thread, so units run one after another in
the flow's process. `runner=dask`: prefect-dask's `DaskTaskRunner`, on the scheduler at `runner.address`
or on a LocalCluster of `runner.n_workers` single-threaded processes that lives as long as the flow run
that uses it. Only the units go to the runner; loading data, fitting and MLflow stay in the flow's process.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, TypeVar

from prefect import Flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.settings import PREFECT_API_URL
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from explorec.config import RunnerConfig, from_dict
from explorec.errors import ConfigError
from explorec.progress import Progress

F = TypeVar("F", bound=Flow)
K = TypeVar("K", bound=Hashable)

SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
"""Environment of the LocalCluster's workers: one BLAS/OpenMP (and so torch intra-op) thread each."""

WORKER_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(256 * 2**20)}
"""glibc malloc settings of the LocalCluster's workers: arrays up to 32 MiB come from the heap and freed
memory is kept up to 256 MiB. Dask's own default (MALLOC_TRIM_THRESHOLD_=65536) pins the mmap threshold at
128 KiB, so each large temporary array of a simulation step is a fresh mmap whose pages fault in and are
zeroed again: a simulation unit took twice its CPU time that way, half of it in the kernel. glibc reads
them once at process start, so they go in before the worker is spawned (dask's pre-spawn environment), not
through the cluster's `env`, which is set inside the already running worker."""


def local_cluster(**kwargs: Any) -> Any:
    """A dask LocalCluster whose worker processes start with `SINGLE_THREADED` and `WORKER_MALLOC`."""
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ": {**SINGLE_THREADED, **WORKER_MALLOC}}):
        return LocalCluster(**kwargs)


def task_runner(runner: RunnerConfig) -> TaskRunner:
    """The Prefect task runner `runner` describes (a new one: a task runner serves one flow run)."""
    if runner.name == "local":
        return ThreadPoolTaskRunner(max_workers=1)
    from prefect_dask import DaskTaskRunner

    if runner.address:
        if not PREFECT_API_URL.value():
            raise ConfigError(
                "runner.address needs a Prefect server that the Dask workers can reach: set PREFECT_API_URL "
                "(e.g. `explorec up`); Prefect's temporary server of this process is local to it"
            )
        return DaskTaskRunner(address=runner.address)
    return DaskTaskRunner(
        cluster_class=local_cluster,
        cluster_kwargs={
            "n_workers": runner.n_workers,
            "threads_per_worker": 1,
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": None,
            "env": {"PREFECT_API_URL": _api_url()},
        },
    )


def _api_url() -> str:
    """The Prefect API this process talks to (its temporary server too), for the workers to report to.

    Without it every worker process would start a temporary server of its own, and the units' task runs
    would not be recorded with the flow run.
    """
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return str(client.api_url).rstrip("/")


def on_runner(subflow: F, config: dict[str, Any]) -> F:
    """`subflow` with the task runner that `config`'s runner section chooses."""
    return subflow.with_options(task_runner=task_runner(from_dict(config).runner))


def unit_threads(config: dict[str, Any]) -> int:
    """Episode threads inside one unit: simulate.episode_workers here, 1 on Dask (one thread per worker)."""
    cfg = from_dict(config)
    return cfg.simulate.episode_workers if cfg.runner.name == "local" else 1


@task(name="share-plan", cache_policy=NO_CACHE)
def share_task(value: Any) -> Any:
    """Return `value`: held by the runner, units read it from there (on Dask each worker fetches it once)."""
    return value


def submit_units(
    unit_task: Any, shared: dict[K, Any], units: dict[K, Sequence[Any]], *, phase: str, **parameters: Any
) -> dict[K, list[Any]]:
    """Submit `unit_task(shared[key], unit, **parameters)` for every key's units; results in unit order.

    Progress lines (`phase`) count units as they complete, in whatever order the runner finishes them.
    """
    handles = {key: share_task.submit(value) for key, value in shared.items()}
    futures = {
        key: [unit_task.submit(handles[key], unit, **parameters) for unit in units[key]] for key in shared
    }
    pending = [future for group in futures.values() for future in group]
    progress = Progress(phase, len(pending), unit="units")
    progress.start(f"{len(shared)} plan(s)")
    for _ in as_completed(pending):
        progress.advance()
    progress.finish()
    return {key: [future.result() for future in group] for key, group in futures.items()}
