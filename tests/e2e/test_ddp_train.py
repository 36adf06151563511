"""`explorec train` with two DDP processes on CPU (gloo): rank 0 alone orchestrates, and it trains as one
process with the same global batch does."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import pytest

from explorec.models.distributed import WORKER_MODULE
from tests.reliability.helpers import all_runs, environment, store_uri

TINY_DETERMINISTIC = [
    "data=synthetic",
    "data.synthetic.n_users=60",
    "data.synthetic.n_items=40",
    "data.synthetic.n_interactions=1000",
    "encoder=none",
    "model.history_length=10",
    "model.dropout=0",  # dropout masks are drawn per process: without them both runs compute the same
    "model.id_dropout=0",
    "trainer.max_epochs=3",
    "trainer.deterministic=true",
    "trainer.enable_progress_bar=false",
]
GLOBAL_BATCH = 16
TOLERANCE = 1e-6
"""Largest difference allowed between a DDP and a one-process metric (float sums in another order)."""


def _train(home: Path, *overrides: str) -> dict[str, Any]:
    """Run `explorec train --json` on `home` (Prefect's database and temp files in it); return the summary."""
    (home / "tmp").mkdir(parents=True)
    env = environment(home, PREFECT_HOME=str(home / "prefect"), TMPDIR=str(home / "tmp"))
    done = subprocess.run(
        [sys.executable, "-m", "explorec.cli", "train", *TINY_DETERMINISTIC, *overrides, "--json"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _flow_runs(home: Path) -> list[tuple[str, str]]:
    """Return (flow name, state) of every flow run in the home's Prefect database."""
    with sqlite3.connect(home / "prefect" / "prefect.db") as database:
        query = "SELECT flow.name, flow_run.state_type FROM flow_run JOIN flow ON flow.id = flow_run.flow_id"
        return list(database.execute(query))


def _worker_processes() -> list[str]:
    """Return the command lines of DDP worker processes still running on this machine."""
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    return [line for line in listing.splitlines() if WORKER_MODULE in line and "ps -eo" not in line]


@pytest.mark.slow
def test_ddp_train_orchestrates_once_and_matches_one_process(tmp_path: Path) -> None:
    """Two gloo processes: one flow run, one MLflow run, no worker left; metrics as one process's."""
    ddp_home, single_home = tmp_path / "ddp", tmp_path / "single"
    ddp = _train(
        ddp_home,
        "trainer=ddp",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        "trainer.precision=32-true",
        f"trainer.batch_size={GLOBAL_BATCH // 2}",
    )
    assert _flow_runs(ddp_home) == [("train", "COMPLETED")]
    runs = all_runs(mlflow.MlflowClient(store_uri(ddp_home)))
    assert [(run.info.run_id, run.info.status) for run in runs] == [(ddp["run_id"], "FINISHED")]
    assert list((ddp_home / "tmp").iterdir()) == []  # the job folder the ranks shared is gone
    assert not [line for line in _worker_processes() if str(ddp_home) in line]

    single = _train(single_home, f"trainer.batch_size={GLOBAL_BATCH}")
    assert _flow_runs(single_home) == [("train", "COMPLETED")]
    assert (ddp["epochs_run"], ddp["best_epoch"]) == (single["epochs_run"], single["best_epoch"])
    for split in ("val", "test"):
        assert ddp["metrics"][split].keys() == single["metrics"][split].keys()
        for name, value in single["metrics"][split].items():
            assert ddp["metrics"][split][name] == pytest.approx(value, abs=TOLERANCE), f"{split}/{name}"
