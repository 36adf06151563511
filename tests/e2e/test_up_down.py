"""`explorec up` stopped with Ctrl-C, and `up --detach` then `down`, leave nothing running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from explorec.pipeline.servers import (
    descendants,
    down,
    free_port,
    is_alive,
    is_listening,
    read_state,
    stop_process_tree,
    stop_services,
    store_layout,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def up_process(home: Path, ports: tuple[int, int], *, detach: bool) -> subprocess.Popen[str]:
    """Start `up(...)` in its own Python process, as the `explorec up` command would run it."""
    # a terminal's foreground `explorec up` gets Ctrl-C even when this test runs under a shell that
    # started it in the background with SIGINT ignored (children inherit an ignored SIGINT)
    code = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "import sys; from pathlib import Path; from explorec.pipeline.servers import up; "
        f"sys.exit(up(Path({str(home)!r}), prefect_port={ports[0]}, mlflow_port={ports[1]}, detach={detach}))"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )


def read_until(process: subprocess.Popen[str], marker: str) -> str:
    """Return the process's output up to and including the line holding `marker` (fails at EOF)."""
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"output ended before {marker!r}:\n{''.join(seen)}")


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A project folder; whatever its servers.json still lists is stopped afterwards, even on failure."""
    yield tmp_path
    stop_services(read_state(store_layout(tmp_path)))


def test_up_stops_every_process_on_ctrl_c(home: Path) -> None:
    ports = (free_port(), free_port())
    process = up_process(home, ports, detach=False)
    try:
        output = read_until(process, "press Ctrl-C")
        assert f"Prefect UI:  http://127.0.0.1:{ports[0]}" in output
        assert f"MLflow UI:   http://127.0.0.1:{ports[1]}" in output
        services = read_state(store_layout(home))
        assert [service.name for service in services] == ["prefect-server", "mlflow-server", "serve"]
        pids = [p for service in services for p in (service.pid, *descendants(service.pid))]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            stop_process_tree(process.pid)
        assert process.stdout is not None
        process.stdout.close()
    assert not store_layout(home).state_file.exists()
    assert not [port for port in ports if is_listening(port)]
    assert not [pid for pid in pids if is_alive(pid)]


def test_detached_up_is_stopped_by_down(home: Path) -> None:
    ports = (free_port(), free_port())
    process = up_process(home, ports, detach=True)
    assert process.wait(timeout=400) == 0, process.stdout.read() if process.stdout else ""
    assert process.stdout is not None
    process.stdout.close()
    services = read_state(store_layout(home))
    pids = [p for service in services for p in (service.pid, *descendants(service.pid))]
    assert all(is_listening(port) for port in ports)
    assert down(home) == 0
    assert not store_layout(home).state_file.exists()
    assert not [port for port in ports if is_listening(port)]
    assert not [pid for pid in pids if is_alive(pid)]
