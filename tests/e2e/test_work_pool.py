"""`explorec up --work-pool`: deployments registered to a process work pool, run by a `prefect worker`.

A run is triggered through the Prefect REST API (the call the UI's Run button makes); the worker, not a
serve process, picks it up; the flow run's artifact names the MLflow run it logged on the MLflow server.
Teardown stops everything and checks that nothing listens any more.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from explorec.pipeline.servers import (
    Stack,
    descendants,
    free_port,
    is_alive,
    is_listening,
    log_tail,
    start_stack,
    stop_services,
)
from flows.serve import DEPLOYMENT_NAMES, SERVED_FLOWS

from .conftest import RetryUnavailable

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1200)]

POOL = "explorec-test-pool"
TERMINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
TINY_OVERRIDES = [
    "data.synthetic.n_users=60",
    "data.synthetic.n_items=40",
    "data.synthetic.n_interactions=1000",
    "model.embedding_dim=16",
    "model.history_length=10",
    "trainer.batch_size=128",
    "trainer.enable_progress_bar=false",
]


@pytest.fixture(scope="module")
def pool_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Both servers and a worker of POOL in a temporary project folder; nothing left listening afterwards."""
    home: Path = tmp_path_factory.mktemp("pool-home")
    ports = [free_port(), free_port()]
    running = start_stack(home, prefect_port=ports[0], mlflow_port=ports[1], work_pool=POOL, timeout=400)
    print(f"\nstack with work pool started: {running.startup_seconds}")
    try:
        yield running
    finally:
        pids = [p for service in running.services for p in (service.pid, *descendants(service.pid))]
        stop_services(running.services)
        assert not [port for port in ports if is_listening(port)], "a server still listens after teardown"
        assert not [pid for pid in pids if is_alive(pid)], "a process outlived teardown"


@pytest.fixture(scope="module")
def prefect(pool_stack: Stack) -> Iterator[httpx.Client]:
    """An HTTP client for the Prefect REST API (the calls the Prefect UI makes)."""
    with httpx.Client(
        base_url=pool_stack.prefect_api_url, timeout=60, transport=RetryUnavailable()
    ) as client:
        yield client


def wait_for_terminal_state(prefect: httpx.Client, flow_run_id: str, timeout: float) -> dict[str, Any]:
    """Poll the flow run until it reaches a terminal state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = prefect.get(f"/flow_runs/{flow_run_id}").json()
        if run["state_type"] in TERMINAL_STATES:
            return run
        time.sleep(2)
    raise AssertionError(f"flow run {flow_run_id} not finished after {timeout:.0f} s")


def test_every_deployment_is_in_the_pool_and_a_worker_polls_it(
    pool_stack: Stack, prefect: httpx.Client
) -> None:
    assert [service.name for service in pool_stack.services] == ["prefect-server", "mlflow-server", "worker"]
    assert pool_stack.work_pool == POOL
    pool = prefect.get(f"/work_pools/{POOL}").json()
    assert pool["type"] == "process"
    deployments = prefect.post("/deployments/filter", json={}).json()
    assert {(d["name"], d["work_pool_name"]) for d in deployments} == {
        (DEPLOYMENT_NAMES[served.name], POOL) for served in SERVED_FLOWS
    }
    workers = prefect.post(f"/work_pools/{POOL}/workers/filter", json={}).json()
    assert [worker["status"] for worker in workers] == ["ONLINE"]


def test_a_run_triggered_through_the_api_completes_on_the_worker_and_links_its_mlflow_run(
    pool_stack: Stack, prefect: httpx.Client
) -> None:
    deployment = prefect.get(f"/deployments/name/train/{DEPLOYMENT_NAMES['train']}").json()
    parameters = {
        "dataset": "synthetic",
        "encoder": "none",
        "epochs": 1,
        "overrides": [*TINY_OVERRIDES, f"tracking.tracking_uri={pool_stack.mlflow_url}"],
    }
    body = {"parameters": parameters, "state": {"type": "SCHEDULED", "message": "Run from the Prefect UI"}}
    response = prefect.post(f"/deployments/{deployment['id']}/create_flow_run", json=body)
    assert response.status_code == 201, response.text
    run = wait_for_terminal_state(prefect, response.json()["id"], timeout=900)
    worker_log = log_tail(next(s for s in pool_stack.services if s.name == "worker"), lines=60)
    assert run["state_type"] == "COMPLETED", worker_log
    assert run["work_pool_name"] == POOL
    [worker] = prefect.post(f"/work_pools/{POOL}/workers/filter", json={}).json()
    logs = prefect.post("/logs/filter", json={"logs": {"flow_run_id": {"any_": [run["id"]]}}}).json()
    submitted = f"Worker '{worker['name']}' submitting flow run '{run['id']}'"
    assert submitted in [entry["message"] for entry in logs]  # the pool's worker, not a serve process, ran it

    artifacts = prefect.post(
        "/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run["id"]]}}}
    ).json()
    [summary] = [artifact for artifact in artifacts if artifact["key"] == "train-summary"]
    with httpx.Client(base_url=f"{pool_stack.mlflow_url}/api/2.0/mlflow", timeout=30) as mlflow:
        experiments = mlflow.post("/experiments/search", json={"max_results": 10}).json()["experiments"]
        search = {"experiment_ids": [e["experiment_id"] for e in experiments]}
        runs = mlflow.post("/runs/search", json=search).json()["runs"]
    assert len(runs) == 1 and runs[0]["info"]["status"] == "FINISHED"
    assert runs[0]["info"]["run_id"] in summary["data"]  # the artifact names the MLflow run the worker logged
