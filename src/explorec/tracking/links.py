"""Links between the two UIs: an MLflow run's tags naming its Prefect flow run, and MLflow page addresses.

The UI addresses come from the environment: `explorec` commands and the `explorec up` serve process set
EXPLOREC_PREFECT_UI_URL and EXPLOREC_MLFLOW_UI_URL (`explorec.pipeline.prefect_home`); where they are
unset, no URL is made up.
"""

from __future__ import annotations

import os
import sys
import urllib.parse

PREFECT_UI_ENV = "EXPLOREC_PREFECT_UI_URL"
MLFLOW_UI_ENV = "EXPLOREC_MLFLOW_UI_URL"
FLOW_RUN_ID_TAG = "explorec.prefect_flow_run_id"
FLOW_RUN_URL_TAG = "explorec.prefect_flow_run_url"


def prefect_flow_run_id() -> str | None:
    """Return the id of the Prefect flow run this code runs in (None outside one or without Prefect)."""
    if "prefect" not in sys.modules:  # a flow run implies Prefect is imported; never import it here
        return None
    from prefect.runtime import flow_run

    return flow_run.get_id()


def flow_run_url(flow_run_id: str, ui_url: str | None = None) -> str | None:
    """Return the Prefect UI page of a flow run (None when no UI address is known)."""
    ui = ui_url or os.environ.get(PREFECT_UI_ENV)
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui else None


def flow_run_tags() -> dict[str, str]:
    """Return the tags naming the enclosing Prefect flow run (id, and its UI page when known); {} outside."""
    flow_run_id = prefect_flow_run_id()
    if flow_run_id is None:
        return {}
    tags = {FLOW_RUN_ID_TAG: flow_run_id}
    url = flow_run_url(flow_run_id)
    if url:
        tags[FLOW_RUN_URL_TAG] = url
    return tags


def mlflow_run_url(ui_url: str, experiment_id: str, run_id: str) -> str:
    """Return the MLflow UI page of a run, in the model-training view (MLflow 3 opens its GenAI view)."""
    return f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def mlflow_version_url(ui_url: str, name: str, version: str) -> str:
    """Return the MLflow UI page of a registered model version."""
    return f"{ui_url.rstrip('/')}/#/models/{urllib.parse.quote(name)}/versions/{version}"
