"""kill -9 of real commands: no run stays RUNNING, a finished run is never reopened, no orphaned server.

The store is watched read-only with sqlite3 while a command runs (opening it with MLflow would create it),
and the command is killed at a known point: an epoch logged (train), the packaged model written (register).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from explorec.pipeline.watchdog import descendants
from explorec.tracking.owner import is_same_process, start_time
from explorec.tracking.reaper import REASON_TAG
from tests.reliability.helpers import TINY, all_runs, environment, explorec, start_explorec, wait_for

LONG_TRAINING = [
    *[item for item in TINY if not item.startswith(("trainer.max_epochs", "data.synthetic.n_"))],
    "data.synthetic.n_users=200",
    "data.synthetic.n_items=60",
    "data.synthetic.n_interactions=5000",
    "trainer.max_epochs=200",
    "trainer.early_stopping_patience=200",
]


def rows(database: Path, query: str, *args: object) -> list[tuple]:
    """Run a read-only query on a store that may not exist yet (no rows then)."""
    if not database.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)) as db:
        try:
            return db.execute(query, args).fetchall()
        except sqlite3.OperationalError:
            return []  # locked for a moment, or the schema not there yet


def prefect_server(pid: int) -> tuple[int, str | None] | None:
    """Return (pid, start time) of the Prefect server (uvicorn) below `pid`, or None while there is none."""
    for child in descendants(pid):
        with contextlib.suppress(OSError):
            if b"uvicorn" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child, start_time(child)
    return None


@pytest.mark.slow
def test_train_killed_mid_training_ends_killed_and_leaves_no_server(tmp_path: Path) -> None:
    """kill -9 after an epoch is logged: its Prefect server is gone in seconds; the next store open ends the
    run KILLED with the reason; no run stays RUNNING."""
    home = tmp_path / "command-home"
    home.mkdir()
    database = home / "mlruns" / "mlflow.db"
    command = start_explorec(home, "train", *LONG_TRAINING, log=tmp_path / "train.log")
    try:
        server = wait_for(lambda: prefect_server(command.pid), 300, "Prefect's server", command)
        query = "SELECT r.run_uuid FROM runs r JOIN metrics m ON m.run_uuid = r.run_uuid " \
                "WHERE r.status = 'RUNNING' AND m.key = 'val/ndcg_at_10'"  # fmt: skip
        run_id = wait_for(lambda: rows(database, query), 300, "an epoch logged", command)[0][0]
    finally:
        command.send_signal(signal.SIGKILL)
        command.wait()
    stopped = time.monotonic()
    wait_for(lambda: not is_same_process(*server), 15, "the orphaned Prefect server to stop")
    assert time.monotonic() - stopped < 15
    assert rows(database, "SELECT status FROM runs WHERE run_uuid = ?", run_id) == [("RUNNING",)]

    after = explorec(home, "promote", "--dry-run")  # any command opens the store
    assert "Traceback" not in after.stderr, after.stderr[-2000:]
    client = MlflowClient(f"sqlite:///{database}")
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert f"pid {command.pid}" in run.data.tags[REASON_TAG]
    assert [r.info.status for r in all_runs(client) if r.info.status == "RUNNING"] == []


@pytest.mark.slow
def test_register_killed_while_packaging_leaves_the_training_run_finished(tmp_path: Path) -> None:
    """kill -9 while the model is being written: the training run stays FINISHED (never reopened), no version
    exists, the abandoned model is ended FAILED by the next open, and registering again works."""
    home = tmp_path / "command-home"
    home.mkdir()
    database = home / "mlruns" / "mlflow.db"
    trained = explorec(home, "train", *TINY, "--json")
    assert trained.returncode == 0, trained.stderr[-3000:]
    run_id = json.loads(trained.stdout.strip().splitlines()[-1])["run_id"]

    command = start_explorec(home, "register", "--run-id", run_id, *TINY, log=tmp_path / "register.log")
    seen: set[str] = set()

    def pending_model() -> list[tuple]:
        status = rows(database, "SELECT status FROM runs WHERE run_uuid = ?", run_id)
        seen.update(value for (value,) in status)
        query = "SELECT model_id FROM logged_models WHERE source_run_id = ? AND status = 1"  # 1: PENDING
        return rows(database, query, run_id)

    try:
        model_id = wait_for(pending_model, 300, "the packaged model being written", command)[0][0]
    finally:
        command.send_signal(signal.SIGKILL)
        command.wait()
    assert seen == {"FINISHED"}, f"the training run was {seen} while packaging"
    assert rows(database, "SELECT count(*) FROM model_versions") == [(0,)]

    again = explorec(home, "register", "--run-id", run_id, *TINY)
    assert again.returncode == 0, again.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{database}", registry_uri=f"sqlite:///{database}")
    assert client.get_run(run_id).info.status == "FINISHED"
    abandoned = client.get_logged_model(model_id)
    assert abandoned.status.to_int() == 3 and "died packaging it" in abandoned.tags[REASON_TAG]  # FAILED
    versions = client.search_model_versions("name = 'explorec-two-tower'")
    assert len(versions) == 1 and model_id not in versions[0].source
    assert [r for r in all_runs(client) if r.info.status == "RUNNING"] == []


ORPHAN_MAKER = textwrap.dedent(
    """
    import subprocess, sys, time
    from explorec.pipeline.watchdog import start_watchdog
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    start_watchdog()
    print(child.pid, flush=True)
    time.sleep(600)
    """
)


def test_the_watchdog_stops_a_killed_commands_descendants_and_nothing_else(tmp_path: Path) -> None:
    """A process with a watchdog and a child is SIGKILLed: the child stops in seconds; a bystander lives."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_MAKER], env=environment(tmp_path), stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        child_started = start_time(child)
        time.sleep(1.5)  # at least one snapshot of the watchdog
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        wait_for(lambda: not is_same_process(child, child_started), 10, "the orphaned child to stop")
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
        parent.kill()
