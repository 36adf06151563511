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

from explorec.models.distributed import WORKER_MODULE, free_port
from explorec.pipeline.servers import store_layout
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


def _start(home: Path, *overrides: str, **variables: str) -> subprocess.Popen[str]:
    """Start `explorec train --json` on `home` (Prefect's database and temp files in it)."""
    (home / "tmp").mkdir(parents=True)
    env = environment(home, PREFECT_HOME=str(home / "prefect"), TMPDIR=str(home / "tmp"), **variables)
    return subprocess.Popen(
        [sys.executable, "-m", "explorec.cli", "train", *TINY_DETERMINISTIC, *overrides, "--json"],
        env=env,
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _summary(process: subprocess.Popen[str]) -> dict[str, Any]:
    """Wait for an `explorec train --json` process; return the summary it printed."""
    stdout, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stderr[-4000:]
    return json.loads(stdout.strip().splitlines()[-1])


def _train(home: Path, *overrides: str) -> dict[str, Any]:
    """Run `explorec train --json` on `home` to completion; return the summary."""
    return _summary(_start(home, *overrides))


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The summary of one process trained with the global batch."""
    home = tmp_path_factory.mktemp("single")
    summary = _train(home, f"trainer.batch_size={GLOBAL_BATCH}")
    assert _flow_runs(home) == [("train", "COMPLETED")]
    return summary


def _assert_same_training(ddp: dict[str, Any], single: dict[str, Any]) -> None:
    """Same epochs, same best epoch, and every validation and test metric within TOLERANCE."""
    assert (ddp["epochs_run"], ddp["best_epoch"]) == (single["epochs_run"], single["best_epoch"])
    for split in ("val", "test"):
        assert ddp["metrics"][split].keys() == single["metrics"][split].keys()
        for name, value in single["metrics"][split].items():
            assert ddp["metrics"][split][name] == pytest.approx(value, abs=TOLERANCE), f"{split}/{name}"


def _flow_runs(home: Path) -> list[tuple[str, str]]:
    """Return (flow name, state) of every flow run in the home's Prefect database."""
    with sqlite3.connect(store_layout(home).prefect_home / "prefect.db") as database:
        query = "SELECT flow.name, flow_run.state_type FROM flow_run JOIN flow ON flow.id = flow_run.flow_id"
        return list(database.execute(query))


def _worker_processes() -> list[str]:
    """Return the command lines of DDP worker processes still running on this machine."""
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    return [line for line in listing.splitlines() if WORKER_MODULE in line and "ps -eo" not in line]


@pytest.mark.slow
def test_ddp_train_orchestrates_once_and_matches_one_process(tmp_path: Path, one_process) -> None:
    """Two gloo processes: one flow run, one MLflow run, no worker left; metrics as one process's."""
    ddp = _train(
        tmp_path,
        "trainer=ddp",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        "trainer.precision=32-true",
        f"trainer.batch_size={GLOBAL_BATCH // 2}",
    )
    assert _flow_runs(tmp_path) == [("train", "COMPLETED")]
    runs = all_runs(mlflow.MlflowClient(store_uri(tmp_path)))
    assert [(run.info.run_id, run.info.status) for run in runs] == [(ddp["run_id"], "FINISHED")]
    assert list((tmp_path / "tmp").iterdir()) == []  # the job folder the ranks shared is gone
    assert not [line for line in _worker_processes() if str(tmp_path) in line]
    _assert_same_training(ddp, one_process)


@pytest.mark.slow
def test_two_nodes_train_as_one_job_tracked_by_node_zero(tmp_path: Path, one_process) -> None:
    """Two "nodes" (two homes on 127.0.0.1): node 0 runs the flow and the MLflow run; node 1 only trains."""
    overrides = [
        "trainer=ddp",
        "trainer.devices=1",
        "trainer.num_nodes=2",
        "trainer.accelerator=cpu",
        "trainer.precision=32-true",
        f"trainer.batch_size={GLOBAL_BATCH // 2}",
    ]
    rendezvous = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    node0, node1 = tmp_path / "node0", tmp_path / "node1"
    first = _start(node0, *overrides, NODE_RANK="0", **rendezvous)
    second = _start(node1, *overrides, NODE_RANK="1", **rendezvous)
    other = _summary(second)
    ddp = _summary(first)
    assert other["node_rank"] == 1 and other["epochs_run"] == ddp["epochs_run"]
    assert _flow_runs(node0) == [("train", "COMPLETED")]
    assert [run.info.run_id for run in all_runs(mlflow.MlflowClient(store_uri(node0)))] == [ddp["run_id"]]
    assert not (store_layout(node1).prefect_home / "prefect.db").exists()  # no flow run on node 1
    assert not (node1 / "mlruns" / "mlflow.db").exists()  # and no MLflow store
    _assert_same_training(ddp, one_process)
