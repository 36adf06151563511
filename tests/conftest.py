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
