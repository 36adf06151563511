"""What reliability tests share: the environment of a real `explorec` process, a tiny config, store reads."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

TINY = [
    "data=synthetic",
    "data.synthetic.n_users=60",
    "data.synthetic.n_items=40",
    "data.synthetic.n_interactions=1000",
    "encoder=none",
    "model.history_length=10",
    "trainer.batch_size=128",
    "trainer.enable_progress_bar=false",
    "trainer.max_epochs=1",
]
"""The smallest run that trains, packages and registers (seconds of training)."""


def environment(home: Path, **extra: str) -> dict[str, str]:
    """Return the environment of an explorec process on `home` (offline, this checkout first on the path)."""
    paths = [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "EXPLOREC_HOME": str(home),
        "PYTHONPATH": os.pathsep.join(path for path in paths if path),
        "HF_HUB_OFFLINE": "1",
        "DO_NOT_TRACK": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONWARNINGS": "ignore",
        **extra,
    }


def explorec(home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `python -m explorec.cli <args>` on `home` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "explorec.cli", *args],
        env=environment(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_explorec(home: Path, *args: str, log: Path) -> subprocess.Popen[bytes]:
    """Start `python -m explorec.cli <args>` on `home` in the background, output to `log`."""
    with log.open("wb") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "explorec.cli", *args],
            env=environment(home),
            cwd=home,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def wait_for(condition: Callable[[], Any], timeout: float, what: str, process: Any = None) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` s or if `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process exited ({process.returncode}) before {what}")
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def store_uri(home: Path) -> str:
    """Return the default MLflow store URI of a home."""
    return f"sqlite:///{home / 'mlruns' / 'mlflow.db'}"


def all_runs(client: Any) -> list[Any]:
    """Return every run of every experiment of a store."""
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    return list(client.search_runs(experiments)) if experiments else []


def statuses(runs: Sequence[Any]) -> list[str]:
    """Return the status of each run."""
    return [run.info.status for run in runs]
