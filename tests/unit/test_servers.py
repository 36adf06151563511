"""Server commands, environments, the state file and process-tree shutdown (no real servers started)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from explorec.pipeline.servers import (
    ServerError,
    Service,
    Stack,
    descendants,
    free_port,
    is_alive,
    is_listening,
    mlflow_server_command,
    mlflow_server_environment,
    prefect_server_command,
    prefect_server_environment,
    read_state,
    serve_environment,
    start_service,
    start_stack,
    stop_process_tree,
    stop_services,
    store_layout,
    wait_for_worker,
    wait_until_healthy,
    worker_command,
    write_state,
)


def test_stores_live_inside_the_project_folder(tmp_path: Path) -> None:
    layout = store_layout(tmp_path)
    assert layout.prefect_home == tmp_path / "mlruns" / "prefect"
    assert layout.mlflow_backend_uri == f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    assert layout.state_file == tmp_path / "mlruns" / "servers.json"


def test_default_layout_follows_explorec_home(isolated_home: Path) -> None:
    assert store_layout().home == isolated_home


def test_prefect_server_binds_loopback_with_analytics_off(tmp_path: Path) -> None:
    command = prefect_server_command(4321)
    assert command[1:] == ["server", "start", "--host", "127.0.0.1", "--port", "4321", "--analytics-off"]
    env = prefect_server_environment(store_layout(tmp_path), 4321)
    assert env["PREFECT_HOME"] == str(tmp_path / "mlruns" / "prefect")
    assert env["PREFECT_API_DATABASE_CONNECTION_URL"].endswith(f"{tmp_path}/mlruns/prefect/prefect.db")
    assert env["PREFECT_SERVER_UI_API_URL"] == "http://127.0.0.1:4321/api"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["DO_NOT_TRACK"] == "true"


def test_mlflow_server_keeps_runs_and_artifacts_under_mlruns(tmp_path: Path) -> None:
    command = mlflow_server_command(store_layout(tmp_path), 5432)
    options = dict(zip(command[2::2], command[3::2], strict=True))
    assert options["--host"] == "127.0.0.1"
    assert options["--port"] == "5432"
    assert options["--backend-store-uri"] == f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    assert options["--default-artifact-root"] == (tmp_path / "mlruns" / "artifacts").as_uri()
    assert options["--artifacts-destination"] == str(tmp_path / "mlruns" / "artifacts")
    env = mlflow_server_environment()
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def test_serve_process_talks_to_the_server_and_resolves_paths_in_the_project(tmp_path: Path) -> None:
    env = serve_environment(store_layout(tmp_path), "http://127.0.0.1:4321", "http://127.0.0.1:5432")
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4321/api"
    assert env["EXPLOREC_HOME"] == str(tmp_path)
    assert env["EXPLOREC_PREFECT_UI_URL"] == "http://127.0.0.1:4321"  # what flow runs link to
    assert env["EXPLOREC_MLFLOW_UI_URL"] == "http://127.0.0.1:5432"


def test_state_file_round_trips(tmp_path: Path) -> None:
    layout = store_layout(tmp_path)
    layout.mlruns.mkdir()
    services = [Service("mlflow-server", 123, "http://127.0.0.1:5000", "/x.log", "42")]
    write_state(layout, Stack(services, "http://127.0.0.1:4200", "http://127.0.0.1:5000", {}))
    assert read_state(layout) == services
    assert read_state(store_layout(tmp_path / "elsewhere")) == []


def test_free_port_is_free_and_is_listening_sees_a_listener() -> None:
    port = free_port()
    assert not is_listening(port)
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        assert is_listening(port)


def test_start_refuses_a_taken_port_before_starting_anything(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        taken = server.getsockname()[1]
        with pytest.raises(ServerError, match=f"port\\(s\\) {taken}"):
            start_stack(tmp_path, prefect_port=taken, mlflow_port=free_port())
    assert not (tmp_path / "mlruns" / "logs").exists()


def test_stop_process_tree_ends_the_group_and_escaped_children(tmp_path: Path) -> None:
    script = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], start_new_session=True)\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    deadline = time.monotonic() + 20
    while len(descendants(parent.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    tree = [parent.pid, *descendants(parent.pid)]
    assert len(tree) == 3
    assert stop_process_tree(parent.pid, timeout=10)
    assert not [pid for pid in tree if is_alive(pid)]
    parent.wait(timeout=5)


def test_stop_process_tree_kills_what_ignores_sigterm() -> None:
    script = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(120)\n"
    )
    command = [sys.executable, "-c", script]
    stubborn = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE)
    assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
    assert not stop_process_tree(stubborn.pid, timeout=0.5)
    assert not is_alive(stubborn.pid)
    stubborn.wait(timeout=5)
    stubborn.stdout.close()


def test_the_worker_polls_the_named_process_pool_and_up_takes_the_pool_name() -> None:
    from explorec.cli import build_parser

    command = worker_command("gpu-box")
    assert command[1:3] == ["worker", "start"]
    assert (
        command[command.index("--pool") + 1] == "gpu-box"
        and command[command.index("--type") + 1] == "process"
    )
    assert build_parser().parse_args(["up", "--work-pool", "gpu-box"]).work_pool == "gpu-box"
    assert build_parser().parse_args(["up"]).work_pool is None  # default: one serve process, no pool


def test_a_worker_that_exits_while_starting_fails_fast_with_its_log(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "print('no such pool type'); raise SystemExit(1)"]
    dying = start_service("worker", command, {}, store_layout(tmp_path), None)
    with pytest.raises(ServerError, match=r"worker exited while starting(?s:.*)no such pool type"):
        wait_for_worker(dying, "http://127.0.0.1:9/api", "pool", timeout=30)


def test_a_server_that_exits_while_starting_fails_fast_with_its_log(tmp_path: Path) -> None:
    layout = store_layout(tmp_path)
    command = [sys.executable, "-c", "print('bad flag'); raise SystemExit(3)"]
    dying = start_service("dying", command, {}, layout, None)
    with pytest.raises(ServerError, match=r"dying exited while starting(?s:.*)bad flag"):
        wait_until_healthy({dying: "http://127.0.0.1:9/health"}, timeout=30)


def test_wait_until_healthy_reports_each_service_and_stop_frees_the_port(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    server = start_service("http", command, dict(os.environ), store_layout(tmp_path), None)
    try:
        seconds = wait_until_healthy({server: f"http://127.0.0.1:{port}/"}, timeout=30)
        assert set(seconds) == {"http"}
        assert is_listening(port)
    finally:
        stop_services([server])
    assert not is_listening(port)
    assert not is_alive(server.pid)
