"""Opening a store ends the runs whose owner process died, and only those (real store, real dead process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient

from explorec.config import TrackingConfig
from explorec.tracking.owner import current_owner, start_time
from explorec.tracking.reaper import REASON_TAG
from explorec.tracking.runs import PARENT_RUN_TAG
from explorec.tracking.store import configure_tracking


def dead_process_owner() -> dict[str, str]:
    """Return the owner tags of a process that ran on this machine and has exited."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    started = start_time(process.pid)
    process.kill()
    process.wait()
    me = current_owner()
    return {**me.tags(), "explorec.owner.pid": str(process.pid), "explorec.owner.start_time": str(started)}


def test_store_open_ends_dead_owners_runs_and_their_children_only(tmp_path: Path) -> None:
    """Dead owner, reused pid, ownerless child → KILLED with a reason; live owner, other host → RUNNING."""
    database = tmp_path / "mlflow.db"
    client = MlflowClient(f"sqlite:///{database}")
    experiment = client.create_experiment("explorec", artifact_location=(tmp_path / "a").as_uri())
    alive = current_owner().tags()
    reused = {**alive, "explorec.owner.start_time": "1"}  # this pid, but not this process
    elsewhere = {**dead_process_owner(), "explorec.owner.host": "another-host"}
    runs = {
        name: client.create_run(experiment, run_name=name, tags=tags).info.run_id
        for name, tags in [
            ("dead", dead_process_owner()),
            ("reused", reused),
            ("alive", alive),
            ("elsewhere", elsewhere),
            ("unowned", {}),
        ]
    }
    runs["child"] = client.create_run(experiment, tags={PARENT_RUN_TAG: runs["dead"]}).info.run_id
    runs["grandchild"] = client.create_run(experiment, tags={PARENT_RUN_TAG: runs["child"]}).info.run_id
    runs["live child"] = client.create_run(
        experiment, tags={PARENT_RUN_TAG: runs["dead"], **alive}
    ).info.run_id

    configure_tracking(TrackingConfig(tracking_uri=f"sqlite:///{database}", experiment="explorec"))
    status = {name: client.get_run(run_id).info.status for name, run_id in runs.items()}
    assert status == {
        "dead": "KILLED",
        "reused": "KILLED",
        "alive": "RUNNING",
        "elsewhere": "RUNNING",
        "unowned": "RUNNING",
        "child": "KILLED",
        "grandchild": "KILLED",
        "live child": "RUNNING",
    }
    reason = client.get_run(runs["dead"]).data.tags[REASON_TAG]
    assert "ended KILLED by explorec" in reason and f"pid {os.getpid()}" in reason
    assert "parent run" in client.get_run(runs["grandchild"]).data.tags[REASON_TAG]
