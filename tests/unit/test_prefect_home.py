"""Where a command's flow runs go: the running `explorec up` server, else the home's own Prefect database."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from explorec.pipeline.prefect_home import mlflow_ui_url, running_stack, use_prefect_home
from explorec.pipeline.servers import Service, free_port, store_layout
from explorec.tracking.links import flow_run_tags, flow_run_url, mlflow_run_url, mlflow_version_url
from explorec.tracking.owner import start_time


class Healthy(BaseHTTPRequestHandler):
    """Answers 200 to /api/health, 404 to anything else (a stand-in for a Prefect server's health route)."""

    def do_GET(self) -> None:
        """Answer the health check."""
        self.send_response(200 if self.path == "/api/health" else 404)
        self.end_headers()
        self.wfile.write(b"true")

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture(autouse=True)
def no_prefect_api_chosen_in_this_process() -> Iterator[None]:
    """Clear a Prefect API left set in this process by an earlier test's harness (tests/flows runs one for
    the whole session): here it would count as chosen by the person, and every case would be "explicit"."""
    import sys

    if "prefect" not in sys.modules:
        yield
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        yield


@pytest.fixture
def health_server() -> Iterator[str]:
    """An HTTP server on a free 127.0.0.1 port answering /api/health; yields its base URL."""
    server = HTTPServer(("127.0.0.1", free_port()), Healthy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def write_state(home: Path, prefect_url: str, prefect_pid: int, mlflow_pid: int) -> None:
    """Write the servers.json `explorec up --detach` leaves, with the given processes as its servers."""
    import json

    layout = store_layout(home)
    layout.mlruns.mkdir(parents=True, exist_ok=True)
    services = [
        Service("prefect-server", prefect_pid, prefect_url, "p.log", start_time(prefect_pid)),
        Service("mlflow-server", mlflow_pid, "http://127.0.0.1:5999", "m.log", start_time(mlflow_pid)),
    ]
    state = {
        "prefect_url": prefect_url,
        "mlflow_url": "http://127.0.0.1:5999",
        "services": [asdict(service) for service in services],
    }
    layout.state_file.write_text(json.dumps(state))


def dead_pid() -> int:
    """Return the pid of a process that has ended."""
    import subprocess

    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_without_a_running_stack_runs_land_in_the_homes_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPLOREC_PREFECT_PORT", "4321")
    monkeypatch.delenv("EXPLOREC_MLFLOW_PORT", raising=False)
    env: dict[str, str] = {}
    target = use_prefect_home(tmp_path, env)
    layout = store_layout(tmp_path)
    assert target.mode == "home" and target.api_url is None
    assert env["PREFECT_HOME"] == str(layout.prefect_home)  # what `explorec up`'s server uses
    assert env["PREFECT_API_DATABASE_CONNECTION_URL"] == layout.prefect_database_url
    assert "PREFECT_API_URL" not in env
    # links point where `explorec up` will show the runs: its default ports (one set by the environment)
    assert env["EXPLOREC_PREFECT_UI_URL"] == "http://127.0.0.1:4321"
    assert env["EXPLOREC_MLFLOW_UI_URL"] == "http://127.0.0.1:5000"
    assert layout.prefect_home.is_dir()


def test_a_running_stack_of_the_home_is_used_directly(tmp_path: Path, health_server: str) -> None:
    write_state(tmp_path, health_server, os.getpid(), dead_pid())
    env: dict[str, str] = {}
    target = use_prefect_home(tmp_path, env)
    assert target.mode == "server"
    assert env["PREFECT_API_URL"] == f"{health_server}/api"
    assert env["EXPLOREC_PREFECT_UI_URL"] == health_server
    assert "EXPLOREC_MLFLOW_UI_URL" not in env  # its MLflow server is gone: no link to it
    assert "PREFECT_API_DATABASE_CONNECTION_URL" not in env


def test_a_stale_state_file_or_a_silent_server_falls_back_to_the_home(
    tmp_path: Path, health_server: str
) -> None:
    write_state(tmp_path, health_server, dead_pid(), dead_pid())  # the recorded server process is gone
    assert running_stack(store_layout(tmp_path)) is None
    silent = f"http://127.0.0.1:{free_port()}"  # our own process, but nothing answers there
    write_state(tmp_path, silent, os.getpid(), os.getpid())
    assert running_stack(store_layout(tmp_path)) is None
    store_layout(tmp_path).state_file.write_text("{not json")
    assert use_prefect_home(tmp_path, {}).mode == "home"


def test_a_prefect_api_the_person_chose_is_kept(tmp_path: Path, health_server: str) -> None:
    write_state(tmp_path, health_server, os.getpid(), os.getpid())
    env = {"PREFECT_API_URL": "http://127.0.0.1:1234/api"}
    target = use_prefect_home(tmp_path, env)
    assert target.mode == "explicit" and env["PREFECT_API_URL"] == "http://127.0.0.1:1234/api"
    assert env["EXPLOREC_PREFECT_UI_URL"] == "http://127.0.0.1:1234"


def test_the_mlflow_ui_is_known_for_a_server_or_the_homes_store_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPLOREC_MLFLOW_UI_URL", "http://127.0.0.1:5999")
    assert mlflow_ui_url("http://127.0.0.1:5001/", tmp_path) == "http://127.0.0.1:5001"
    assert mlflow_ui_url(store_layout(tmp_path).mlflow_backend_uri, tmp_path) == "http://127.0.0.1:5999"
    assert mlflow_ui_url(f"sqlite:///{tmp_path / 'elsewhere.db'}", tmp_path) is None


def test_links_outside_a_flow_run_and_page_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    assert flow_run_tags() == {}  # no flow run here: no tag, nothing made up
    monkeypatch.delenv("EXPLOREC_PREFECT_UI_URL", raising=False)
    assert flow_run_url("abc") is None
    assert flow_run_url("abc", "http://h:1/") == "http://h:1/runs/flow-run/abc"
    run_page = "http://h:2/#/experiments/7/runs/r1?workflowType=machine_learning"  # the model-training view
    assert mlflow_run_url("http://h:2", "7", "r1") == run_page
    assert mlflow_version_url("http://h:2/", "my model", "3") == "http://h:2/#/models/my%20model/versions/3"
