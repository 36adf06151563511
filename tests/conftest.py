"""Shared test fixtures: the real-data folder (skip when unset) and per-test isolated output folders."""

from __future__ import annotations

import os
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
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Resolve explorec's relative output paths (mlruns/...) inside the test's own tmp folder."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("EXPLOREC_HOME", str(home))
    return home
