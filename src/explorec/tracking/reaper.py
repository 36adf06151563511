"""End what died with its process: RUNNING runs and PENDING logged models whose owner process is gone.

Every explorec run and packaged model records its owner (`explorec.tracking.owner`). A process killed with
SIGKILL cannot end its run, which would show RUNNING forever; the next explorec command that opens the
store (`configure_tracking`) ends such a run KILLED, and a model it was packaging FAILED, with the reason as
a tag. Only owners on this machine, in this boot, are judged; a run without an owner is ended only when it
is nested under a run ended here and nobody else can own it (it has no owner of its own, or a dead one).
"""

from __future__ import annotations

import socket
from typing import Any

from explorec.tracking.owner import OWNER_TAG_PREFIX, current_owner, owner_from_tags
from explorec.tracking.runs import PARENT_RUN_TAG

REASON_TAG = "explorec.ended_reason"
PAGE = 1000


def _running_runs(client: Any, experiment_ids: list[str]) -> list[Any]:
    """Return every RUNNING run of the experiments (all pages)."""
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            experiment_ids, "attributes.status = 'RUNNING'", max_results=PAGE, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def dead_runs(runs: list[Any]) -> dict[str, str]:
    """Return {run id: reason} for the runs whose owner is gone, and their ownerless or orphaned children."""
    dead: dict[str, str] = {}
    for run in runs:
        owner = owner_from_tags(run.data.tags)
        if owner is not None and owner.is_gone():
            dead[run.info.run_id] = f"its process ({owner.describe()}) ended without ending it"
    changed = True
    while changed:  # children of dead runs, grandchildren, ...
        changed = False
        for run in runs:
            parent = run.data.tags.get(PARENT_RUN_TAG)
            run_id = run.info.run_id
            if run_id in dead or parent not in dead:
                continue
            owner = owner_from_tags(run.data.tags)
            if owner is None or owner.is_gone():
                dead[run_id] = f"its parent run {parent} was ended: {dead[parent]}"
                changed = True
    return dead


def reap_dead_runs(tracking_uri: str) -> list[str]:
    """End KILLED the RUNNING runs whose owner died, FAILED their PENDING logged models; return run ids."""
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModelStatus

    client = MlflowClient(tracking_uri)
    experiment_ids = [experiment.experiment_id for experiment in client.search_experiments()]
    if not experiment_ids:
        return []
    me = current_owner().describe()
    dead = dead_runs(_running_runs(client, experiment_ids))
    for run_id, reason in dead.items():
        client.set_tag(run_id, REASON_TAG, f"ended KILLED by explorec ({me}): {reason}")
        client.set_terminated(run_id, "KILLED")
    host_tag = f"{OWNER_TAG_PREFIX}host"
    for model in _pending_models(client, experiment_ids):
        owner = owner_from_tags(model.tags)
        if model.tags.get(host_tag) == socket.gethostname() and owner is not None and owner.is_gone():
            reason = f"ended FAILED by explorec ({me}): its process ({owner.describe()}) died packaging it"
            client.set_logged_model_tags(model.model_id, {REASON_TAG: reason})
            client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
    return list(dead)


def _pending_models(client: Any, experiment_ids: list[str]) -> list[Any]:
    """Return the logged models of the experiments still PENDING (being written or abandoned)."""
    from mlflow.entities import LoggedModelStatus

    models: list[Any] = []
    token = None
    while True:
        page = client.search_logged_models(
            experiment_ids=experiment_ids,
            max_results=PAGE,
            page_token=token,
        )
        models.extend(model for model in page if model.status == LoggedModelStatus.PENDING)  # SQL: an int
        token = page.token
        if not token:
            return models
