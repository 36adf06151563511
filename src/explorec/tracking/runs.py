"""The one owner of an MLflow run's lifecycle: create it with its tags, end it FINISHED or FAILED."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from explorec.tracking.owner import owner_tags

PARENT_RUN_TAG = "mlflow.parentRunId"


@contextlib.contextmanager
def tracked_run(
    client: Any,
    experiment_id: str,
    *,
    run_name: str,
    tags: Mapping[str, str],
    parent_run_id: str | None = None,
    killed_by: tuple[type[BaseException], ...] = (),
) -> Iterator[str]:
    """Create a run (nested under `parent_run_id` when given), yield its id, end it FINISHED or FAILED.

    Any exception, KeyboardInterrupt included, ends the run FAILED and propagates; one of `killed_by`
    (a stopped run, such as a pruned trial) ends it KILLED. The run records this process as its owner
    (`explorec.owner.*`), so that a run left RUNNING by a killed process is ended by the next store open.
    """
    all_tags = {**dict(tags), **owner_tags()}
    if parent_run_id:
        all_tags[PARENT_RUN_TAG] = parent_run_id
    run_id = client.create_run(experiment_id, run_name=run_name, tags=all_tags).info.run_id
    try:
        yield run_id
    except BaseException as error:
        client.set_terminated(run_id, "KILLED" if isinstance(error, killed_by) else "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
