"""`explorec serve` as a real process on a free 127.0.0.1 port, over a real registry: it serves the champion,
follows an alias move without a restart, never serves a version moved in around the gates (the guard puts the
last gated champion back), and after kill -9 under concurrent load the impression log reopens with no torn
slate and every answered slate in it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import mlflow
import pytest

from explorec.config.registry import GatesConfig
from explorec.registry.promotion import ModelRegistry
from explorec.serving.bundle import RecommenderBundle
from explorec.serving.impressions import ImpressionLog
from explorec.serving.latency import free_port
from explorec.serving.pyfunc import log_recommender
from tests.unit.registry.conftest import tiny_bundle, tiny_catalogue_dataset

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(900)]
NAME = "explorec-two-tower"
METRICS = {
    "final/test/ndcg_at_10": 0.08,
    "final/test/recall_at_20": 0.15,
    "served/policy/intra_list_diversity": 0.7,
    "served/policy/catalog_coverage": 0.4,
    "served/policy/exposure_gini": 0.7,
}


def register(registry: ModelRegistry, bundle: RecommenderBundle) -> str:
    """Log `bundle` in a new run and register it; return the version."""
    with mlflow.start_run() as run:
        mlflow.log_metrics(METRICS)
        log_recommender(bundle)
    return registry.register_candidate(run.info.run_id, NAME)


def start_service(home: Path, port: int) -> subprocess.Popen[str]:
    """Start `explorec serve` on `port` (alias re-read every second) in its own process group."""
    env = {**os.environ, "EXPLOREC_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    overrides = [f"service.port={port}", "service.poll_seconds=1"]
    return subprocess.Popen(
        [sys.executable, "-m", "explorec.cli", "serve", *overrides],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def wait_healthy(process: subprocess.Popen[str], url: str, timeout_s: float = 240.0) -> dict:
    """Wait for GET /health, or fail with the service's output."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"service exited {process.returncode}: {process.stdout.read()[-3000:]}")
        try:
            answer = httpx.get(f"{url}/health", timeout=2.0)
            if answer.status_code == 200:
                return answer.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("service did not become healthy")


@pytest.fixture
def home(isolated_home: Path) -> Path:
    """A home whose registry has a passed champion (v1), a passed v2 and a failed-gate v3."""
    dataset = tiny_catalogue_dataset()
    uri = f"sqlite:///{isolated_home / 'mlruns' / 'mlflow.db'}"
    (isolated_home / "mlruns").mkdir()
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        registry = ModelRegistry(uri)
        first = register(registry, tiny_bundle(dataset, seed=0))
        assert registry.promote(NAME, first, GatesConfig(), actor="test").promoted
        second = register(registry, tiny_bundle(dataset, seed=1))
        registry.client.set_model_version_tag(NAME, second, "gate.status", "passed")
        third = register(registry, tiny_bundle(dataset, seed=2))
        registry.client.set_model_version_tag(NAME, third, "gate.status", "failed")
    finally:
        mlflow.set_tracking_uri(previous)
    return isolated_home


def stop(process: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM) -> None:
    """Signal the service's process group and wait for it."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
    process.wait(timeout=60)


def test_service_follows_the_alias_and_survives_kill_9_under_load(home: Path) -> None:
    """Serve, move the alias (passed: followed; failed gate: refused), then kill -9 under 8 clients."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_service(home, port)
    try:
        assert wait_healthy(process, url)["model"]["version"] == "1"
        registry = ModelRegistry(f"sqlite:///{home / 'mlruns' / 'mlflow.db'}")
        registry.client.set_registered_model_alias(NAME, "champion", "2")
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/health").json()["model"]["version"] != "2" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert httpx.get(f"{url}/health").json()["model"]["version"] == "2"
        registry.client.set_registered_model_alias(NAME, "champion", "3")  # around the gates
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/health").json()["model"]["version"] != "1" and time.monotonic() < deadline:
            time.sleep(0.5)
        # v3 was never served: the guard put @champion back on v1, the last champion promoted through explorec
        assert str(registry.client.get_model_version_by_alias(NAME, "champion").version) == "1"
        # v3 was never served: the guard put @champion back on v1 (last promoted through explorec)
        assert httpx.get(f"{url}/health").json()["model"]["version"] == "1"

        answered: list[str] = []
        stop_at = time.monotonic() + 4.0

        def client(seed: int) -> None:
            with httpx.Client(timeout=10.0) as session:
                while time.monotonic() < stop_at:
                    try:
                        reply = session.post(f"{url}/recommend", json={"user_id": f"u{seed}", "k": 5})
                    except httpx.HTTPError:
                        return  # the server was killed mid-request
                    assert reply.status_code == 200, reply.text
                    answered.append(reply.json()["impression_id"])

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(client, seed) for seed in range(8)]
            time.sleep(2.0)
            stop(process, signal.SIGKILL)
            for future in futures:
                future.result()
        assert len(answered) > 10
    finally:
        stop(process)

    log = ImpressionLog(f"sqlite:///{home / 'mlruns' / 'impressions.db'}")
    counts = log.counts()
    assert counts["slots"] == 5 * counts["impressions"]  # no torn slate
    logged = {row["impression_id"] for batch in log.logged_slots() for row in batch}
    assert set(answered) <= logged  # a slate is logged before its answer leaves
    log.close()

    registry.client.set_registered_model_alias(NAME, "champion", "3")  # around the gates again, server down
    restarted = start_service(home, port)
    try:
        assert wait_healthy(restarted, url)["model"]["version"] == "1"
        reply = httpx.post(f"{url}/recommend", json={"user_id": "u1", "k": 3})
        assert reply.status_code == 200, reply.text
    finally:
        stop(restarted)
    output = restarted.stdout.read()
    assert "warning: @champion was moved to v3 (gate status 'failed')" in output and "Traceback" not in output
    reopened = ImpressionLog(f"sqlite:///{home / 'mlruns' / 'impressions.db'}")
    assert reopened.counts()["impressions"] == counts["impressions"] + 1
    reopened.close()
