"""End-to-end fixtures: real Prefect and MLflow servers plus the serve process, on free 127.0.0.1 ports.

Everything runs in a temporary project folder; teardown stops every process tree (even after a failure)
and checks that nothing listens on the ports any more.
"""

from __future__ import annotations

import os
import shutil
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
    start_stack,
    stop_services,
)

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Start both servers and the serve process in a temporary project folder; stop them afterwards."""
    home = tmp_path_factory.mktemp("e2e-home")
    ports = [free_port(), free_port()]
    started = time.monotonic()
    running = start_stack(home, prefect_port=ports[0], mlflow_port=ports[1], timeout=300)
    print(f"\nstack started in {time.monotonic() - started:.1f} s: {running.startup_seconds}")
    try:
        yield running
    finally:
        pids = [p for service in running.services for p in (service.pid, *descendants(service.pid))]
        stopping = time.monotonic()
        stop_services(running.services)
        print(f"stack stopped in {time.monotonic() - stopping:.1f} s")
        assert not [port for port in ports if is_listening(port)], "a server still listens after teardown"
        assert not [pid for pid in pids if is_alive(pid)], "a server process outlived teardown"


class RetryUnavailable(httpx.HTTPTransport):
    """Retry requests answered 503 (Prefect's "retry me" answer when SQLite is busy), as its client does."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send the request; on 503 wait and resend, up to five times."""
        for attempt in range(5):
            response = super().handle_request(request)
            if response.status_code != 503:
                return response
            response.close()
            time.sleep(1 + attempt)
        return super().handle_request(request)


@pytest.fixture(scope="module")
def prefect(stack: Stack) -> Iterator[httpx.Client]:
    """An HTTP client for the Prefect REST API (the calls the Prefect UI makes)."""
    with httpx.Client(base_url=stack.prefect_api_url, timeout=60, transport=RetryUnavailable()) as client:
        yield client


@pytest.fixture(scope="module")
def mlflow(stack: Stack) -> Iterator[httpx.Client]:
    """An HTTP client for the MLflow REST API."""
    with httpx.Client(base_url=f"{stack.mlflow_url}/api/2.0/mlflow", timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $EXPLOREC_SCREENSHOT_DIR, else a temporary folder."""
    folder = os.environ.get("EXPLOREC_SCREENSHOT_DIR")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _missing_browser(reason: str) -> None:
    """Skip (or fail when EXPLOREC_REQUIRE_BROWSER=1, as CI sets) because the browser is unavailable."""
    if os.environ.get("EXPLOREC_REQUIRE_BROWSER") == "1":
        pytest.fail(f"EXPLOREC_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium driven by Playwright (no browser download: executable_path is given)."""
    executable = os.environ.get("EXPLOREC_CHROMIUM") or shutil.which("chromium")
    if not executable:
        _missing_browser("Debian's chromium is not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing_browser("the Python package playwright is not installed (pip install playwright==1.65.2)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()
