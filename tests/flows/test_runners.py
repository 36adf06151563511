"""Task runners: simulate and study on Prefect's Dask task runner give the local runner's tables exactly."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import pytest
from mlflow.tracking import MlflowClient
from prefect import flow, task
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect_dask import DaskTaskRunner

from explorec.config import RunnerConfig, to_dict
from explorec.errors import ConfigError
from explorec.pipeline.config import load_config
from explorec.simulation.tracked import STUDY_TABLES, TABLES
from flows.runner import on_runner, submit_units, task_runner
from flows.simulate import simulate_flow
from flows.study import study_flow
from tests.flows.test_simulate_flow import TINY_WORLD
from tests.flows.test_study_flow import TINY_STUDY

DASK = ["runner=dask", "runner.n_workers=2"]
MALLOC = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
TIMINGS = ("seconds",)
"""Columns that hold wall times, not results (they differ between any two runs)."""


def _listening() -> set[tuple[int, int]]:
    """(pid, port) of every listening TCP socket of this process and its descendants."""
    me = psutil.Process()
    pids = {me.pid, *(child.pid for child in me.children(recursive=True))}
    return {
        (conn.pid, conn.laddr.port)
        for conn in psutil.net_connections(kind="tcp")
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids
    }


def _tables(summary: dict[str, Any], names: tuple[str, ...], folder: Path) -> dict[str, pd.DataFrame]:
    """The run's CSV tables, without the timing columns."""
    client = MlflowClient(summary["tracking_uri"])
    tables = {}
    for name in names:
        path = client.download_artifacts(summary["run_id"], f"{name}.csv", str(folder))
        frame = pd.read_csv(path)
        tables[name] = frame.drop(columns=[c for c in TIMINGS if c in frame.columns])
    return tables


def _assert_same_tables(local: dict[str, pd.DataFrame], dask: dict[str, pd.DataFrame]) -> None:
    for name, frame in local.items():
        assert len(frame) > 0, name
        pd.testing.assert_frame_equal(frame, dask[name], check_exact=True, obj=name)


def test_runner_config_chooses_the_task_runner() -> None:
    local = task_runner(RunnerConfig())
    assert not isinstance(local, DaskTaskRunner) and local._max_workers == 1
    cluster = task_runner(RunnerConfig(name="dask", n_workers=3))
    assert isinstance(cluster, DaskTaskRunner) and cluster.address is None
    assert cluster.cluster_kwargs["n_workers"] == 3 and cluster.cluster_kwargs["threads_per_worker"] == 1
    remote = task_runner(RunnerConfig(name="dask", address="tcp://127.0.0.1:8786"))
    assert remote.address == "tcp://127.0.0.1:8786" and not remote.cluster_kwargs


def test_an_existing_cluster_needs_a_prefect_server_the_workers_can_reach() -> None:
    with (
        temporary_settings(restore_defaults={PREFECT_API_URL}),
        pytest.raises(ConfigError, match="PREFECT_API_URL"),
    ):
        task_runner(RunnerConfig(name="dask", address="tcp://127.0.0.1:8786"))


@task
def _worker_facts() -> tuple[int, str | None, str | None, tuple[str | None, ...]]:
    # what the process was started with (glibc reads its malloc settings then), not os.environ now
    started = dict(
        entry.split("=", 1) for entry in Path("/proc/self/environ").read_text().split("\0") if "=" in entry
    )
    malloc = tuple(started.get(name) for name in MALLOC)
    return os.getpid(), started.get("OMP_NUM_THREADS"), os.environ.get("PREFECT_API_URL"), malloc


@flow
def _probe() -> list[tuple[int, str | None, str | None, tuple[str | None, ...]]]:
    return [future.result() for future in [_worker_facts.submit() for _ in range(4)]]


def test_dask_runner_runs_tasks_in_single_threaded_worker_processes_and_closes_them() -> None:
    before = _listening()
    facts = on_runner(_probe, to_dict(load_config(DASK)))()
    assert all(pid != os.getpid() for pid, *_ in facts)
    assert {threads for _, threads, _, _ in facts} == {"1"}
    # large temporaries from the heap, not dask's default that mmaps (and page-faults) each of them
    assert {malloc for *_, malloc in facts} == {(str(32 * 2**20), str(256 * 2**20))}
    assert {api for _, _, api, _ in facts} == {
        PREFECT_API_URL.value().rstrip("/")
    }  # their task runs land with the flow's
    assert _listening() == before  # the LocalCluster's scheduler and workers are gone


@pytest.mark.slow
def test_simulate_and_study_on_dask_equal_the_local_runner(tmp_path: Path) -> None:
    before = _listening()
    local = simulate_flow(overrides=[*TINY_WORLD, "simulate.n_replications=3"])
    dask = simulate_flow(overrides=[*TINY_WORLD, "simulate.n_replications=3", *DASK])
    _assert_same_tables(_tables(local, TABLES, tmp_path / "l"), _tables(dask, TABLES, tmp_path / "d"))
    local = study_flow(overrides=TINY_STUDY)
    dask = study_flow(overrides=[*TINY_STUDY, *DASK])
    tables = STUDY_TABLES
    _assert_same_tables(_tables(local, tables, tmp_path / "sl"), _tables(dask, tables, tmp_path / "sd"))
    assert local["answer"] == dask["answer"]
    assert _listening() == before


@task
def _square(base: int, unit: int) -> int:
    return base + unit * unit


@flow
def _units() -> dict[str, list[int]]:
    return submit_units(_square, {"a": 0, "b": 100}, {"a": [1, 2, 3], "b": [4]}, phase="squaring")


def test_submit_units_keeps_unit_order_and_says_how_many_units_are_done(
    caplog: pytest.LogCaptureFixture,
) -> None:
    progress = logging.getLogger("explorec.progress")
    progress.addHandler(caplog.handler)  # the progress logger does not propagate to the root logger
    try:
        with caplog.at_level(logging.INFO, logger="explorec.progress"):
            results = on_runner(_units, to_dict(load_config([])))()
    finally:
        progress.removeHandler(caplog.handler)
    assert results == {"a": [1, 4, 9], "b": [116]}
    lines = [record.getMessage() for record in caplog.records if record.name == "explorec.progress"]
    assert lines[0].startswith("squaring: started, 4 units; 2 plan(s)")
    assert lines[-1].startswith("squaring: done, 4/4 units")
