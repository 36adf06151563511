"""The real `explorec` command, run as a subprocess, on bad config, bad data and a damaged MLflow store:
exactly one line on stderr mentions an error (Prefect repeats none of it), no traceback, a non-zero exit;
with `--debug` the traceback is shown.

Plus `describe_failure` on the real exception types of MLflow and SQLAlchemy (in process, fast).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from explorec.errors import ExternalError
from explorec.pipeline.failures import describe_failure
from tests.flows.conftest import write_tiny_ml100k

ROOT = Path(__file__).resolve().parents[2]
ERROR_WORD = re.compile("error", re.IGNORECASE)
CONFIG_CASES = [
    ("model.embedding_dim=0", 2, "model.embedding_dim=0 must be >= 1"),
    ("trainer.batch_size=0", 2, "trainer.batch_size=0 must be >= 1"),
    ("trainer.max_epochs=0", 2, "trainer.max_epochs=0 must be >= 1"),
    ("gates.ndcg_at_10.threshold=nan", 2, "gates.ndcg_at_10.threshold=nan must be a finite number"),
    ("data.timestamp_slack_s=-5", 2, "data.timestamp_slack_s=-5.0 must be >= 0"),
]


def explorec(home: Path, *arguments: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `python -m explorec.cli` in `home` (EXPLOREC_HOME), offline; return the finished process."""
    env = {
        **os.environ,
        "EXPLOREC_HOME": str(home),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
        "DO_NOT_TRACK": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONWARNINGS": "ignore",
    }
    env.pop("EXPLOREC_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "explorec.cli", *arguments],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_error_line(
    done: subprocess.CompletedProcess[str], command: str, expected: str, code: int
) -> None:
    """Exactly one stderr line mentions an error: the CLI's own, holding `expected`; no traceback."""
    lines = [line for line in done.stderr.splitlines() if ERROR_WORD.search(line)]
    assert len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith(f"explorec {command}: error: "), lines[0]
    assert expected in lines[0], lines[0]
    assert "Traceback" not in done.stderr
    assert done.returncode == code, (done.returncode, done.stderr[-2000:])


def data_home(tmp_path: Path) -> tuple[Path, Path]:
    """Return (EXPLOREC_HOME, u.data of a valid tiny ml-100k/ under it)."""
    home = tmp_path / "home"
    ratings = write_tiny_ml100k(home / "data" / "ml-100k") / "u.data"
    return home, ratings


def data_overrides(home: Path) -> list[str]:
    """Overrides reading the tiny data under `home` and never downloading."""
    return [f"data.data_dir={home / 'data'}", f"data.cache_dir={home / 'cache'}", "data.allow_download=false"]


@pytest.mark.slow
@pytest.mark.parametrize(("override", "code", "expected"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_a_bad_config_value_is_one_line(tmp_path: Path, override: str, code: int, expected: str) -> None:
    """A value out of its domain stops `explorec train` before anything runs, in one line (exit 2)."""
    assert_one_error_line(explorec(tmp_path, "train", "data=synthetic", override), "train", expected, code)


def break_ratings(ratings: Path, case: str) -> str:
    """Break u.data as `case` says; return the text the error line must hold."""
    lines = ratings.read_text().splitlines()
    if case == "empty file":
        ratings.write_text("")
        return f"{ratings}: holds no ratings: the file is empty"
    if case == "folder for a file":
        ratings.unlink()
        ratings.mkdir()
        return f"{ratings}: is a folder, not a file"
    if case == "one line":
        ratings.write_text(lines[0] + "\n")
        return f"{ratings}: too little data to split"
    user, item, rating, _ = lines[2].split("\t")
    lines[2] = f"{user}\t{item}\t{rating}\t999999999999"
    ratings.write_text("\n".join(lines) + "\n")
    return f"{ratings}, row 3, column 'timestamp': timestamp 999999999999 (year 33658) is in the future"


DATA_CASES = ["empty file", "folder for a file", "one line", "far-future timestamp"]


@pytest.mark.slow
@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_data_is_one_line_without_prefect_repeating_it(tmp_path: Path, case: str) -> None:
    """`explorec preprocess` on broken data: one line naming the file (exit 4), no Prefect ERROR lines."""
    home, ratings = data_home(tmp_path)
    expected = break_ratings(ratings, case)
    done = explorec(home, "preprocess", *data_overrides(home))
    assert_one_error_line(done, "preprocess", expected, 4)
    processed = home / "mlruns" / "processed"
    assert not processed.exists() or not any(processed.iterdir())


@pytest.mark.slow
def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    """With --debug the same data error comes with its traceback (and a non-zero exit)."""
    home, ratings = data_home(tmp_path)
    break_ratings(ratings, "one line")
    done = explorec(home, "preprocess", *data_overrides(home), "--debug")
    assert done.returncode != 0
    assert "Traceback" in done.stderr and "DataValidationError" in done.stderr


@pytest.mark.slow
def test_a_damaged_mlflow_store_is_one_line_with_what_to_do(tmp_path: Path) -> None:
    """A mlruns/mlflow.db that is not a database: one line naming the file and what to do (exit 7)."""
    (tmp_path / "mlruns").mkdir()
    (tmp_path / "mlruns" / "mlflow.db").write_text("not a database\n")
    done = explorec(tmp_path, "promote", "--dry-run")
    assert_one_error_line(done, "promote", "mlflow.db is not an SQLite database; restore it from a backup", 7)
    debug = explorec(tmp_path, "promote", "--dry-run", "--debug")
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "StoreError" in debug.stderr


def test_describe_failure_on_real_library_errors() -> None:
    """MLflow's 'not found', SQLAlchemy's damaged file, torch's size mismatch, an OS error: one line each."""
    import sqlite3

    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    missing = MlflowException("Run with id=abc not found\nmore detail", error_code=RESOURCE_DOES_NOT_EXIST)
    damaged = sqlalchemy.exc.DatabaseError("SELECT 1", {}, sqlite3.DatabaseError("file is not a database"))
    try:
        raise RuntimeError("while logging") from damaged
    except RuntimeError as wrapped:
        chained = wrapped
    import torch

    try:  # a checkpoint of another size: torch raises a plain RuntimeError from its own code
        torch.nn.Linear(2, 2).load_state_dict({"weight": torch.zeros(3, 3), "bias": torch.zeros(3)})
    except RuntimeError as error:
        mismatch = error
    lines = {
        "torch": describe_failure(mismatch),
        "mlflow": describe_failure(missing),
        "sqlalchemy": describe_failure(chained),
        "os": describe_failure(PermissionError(13, "Permission denied", "/data/x")),
        "other": describe_failure(ZeroDivisionError("division by zero")),
    }
    assert all(isinstance(line, ExternalError) and "\n" not in str(line) for line in lines.values())
    assert str(lines["mlflow"]).startswith("MLflow: Run with id=abc not found; check the run id")
    assert "file is not a database; check tracking.tracking_uri" in str(lines["sqlalchemy"])
    assert "Permission denied" in str(lines["os"]) and "writable" in str(lines["os"])
    assert str(lines["torch"]).startswith("torch failed: Error(s) in loading state_dict for Linear")
    assert "model.* settings it was trained with" in str(lines["torch"])
    assert str(lines["other"]).startswith("unexpected ZeroDivisionError: division by zero")
    assert all("--debug" in str(line) for line in lines.values())
