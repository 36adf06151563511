"""Shared test fixtures: the real-data folder (skip when unset) and per-test isolated output folders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def real_data_dir() -> Path:
    """Return $EXPLOREC_DATA_DIR, or skip the test when it is not set."""
    value = os.environ.get("EXPLOREC_DATA_DIR")
    if not value and os.environ.get("EXPLOREC_REQUIRE_REAL_DATA") == "1":
        pytest.fail("EXPLOREC_REQUIRE_REAL_DATA=1 but EXPLOREC_DATA_DIR is not set")
    if not value:
        pytest.skip("EXPLOREC_DATA_DIR is not set; real-data tests need it (CI sets it)")
    path = Path(value).resolve()
    if not path.is_dir():
        pytest.fail(f"EXPLOREC_DATA_DIR={value} is not a folder")
    return path


@pytest.fixture(autouse=True)
def fresh_mlflow_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Start every test with no active MLflow experiment or run, as a new process would.

    `configure_tracking` sets a process-wide active experiment (and MLFLOW_EXPERIMENT_ID for child processes);
    a later test on another store must not inherit it. MLflow has no public call that clears it.
    """
    import mlflow

    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.tracking.fluent._active_experiment_id = None
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.tracking.fluent._active_experiment_id = None


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Resolve explorec's relative output paths (mlruns/...) inside the test's own tmp folder."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("EXPLOREC_HOME", str(home))
    return home


def _postgres_binaries() -> Path | None:
    """Return the folder of Debian's PostgreSQL server binaries (initdb, pg_ctl), or None."""
    import shutil

    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return candidates[-1].parent if candidates else None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """Start a real PostgreSQL server on a free 127.0.0.1 port for the session; yield its SQLAlchemy URL.

    As root the server runs as the `postgres` user (PostgreSQL refuses root). Skipped when Debian's
    PostgreSQL is not installed, unless EXPLOREC_REQUIRE_POSTGRES=1 (CI installs it and sets that).
    """
    import shutil
    import socket
    import subprocess
    import tempfile

    binaries = _postgres_binaries()
    if binaries is None:
        if os.environ.get("EXPLOREC_REQUIRE_POSTGRES") == "1":
            pytest.fail("EXPLOREC_REQUIRE_POSTGRES=1 but PostgreSQL's initdb is not installed")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql); CI installs it")
    folder = Path(tempfile.mkdtemp(prefix="explorec-postgres-"))  # outside pytest's root-only tmp tree
    data = folder / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def run(*command: str) -> None:
        subprocess.run([*as_user, *command], check=True, capture_output=True, text=True, timeout=120)

    run(str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start")
    try:
        run(str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "explorec")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/explorec"
    finally:
        run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
