"""A person's path through the UIs: trigger a deployment as the Prefect UI does, then find the run in MLflow.

Real `prefect server`, `mlflow server` and `flows/serve.py` processes (see conftest.py); the flow runs on a
tiny synthetic data set. The browser part opens the same pages a person would and saves screenshots.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from explorec.pipeline.servers import Stack, log_tail
from flows.serve import DEPLOYMENT_NAMES

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

FLOW = "pipeline"  # the flow whose deployment is triggered
REGISTERED_MODEL = "explorec-two-tower"
DEPLOYMENT = DEPLOYMENT_NAMES[FLOW]
EXPERIMENT = "explorec"
TERMINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
TINY_OVERRIDES = [
    "data.synthetic.n_users=60",
    "data.synthetic.n_items=40",
    "data.synthetic.n_interactions=1000",
    "model.embedding_dim=16",
    "model.history_length=10",
    "trainer.max_epochs=2",
    "trainer.batch_size=128",
    "trainer.enable_progress_bar=false",
    "tune.n_trials=2",
    # tiny synthetic data cannot clear the production floors: open the gates, keep the decision machinery
    "gates.ndcg_at_10.threshold=0.0",
    "gates.recall_at_20.threshold=0.0",
    "gates.intra_list_diversity.threshold=0.0",
    "gates.catalog_coverage.threshold=0.0",
    "gates.exposure_gini.threshold=1.0",
]


def form_parameters(mlflow_url: str) -> dict[str, Any]:
    """Return what a person fills into the deployment's form for a tiny run tracked on the test server."""
    return {
        "dataset": "synthetic",
        "split": "leave_last_out",
        "encoder": "none",
        "search": {"run": True, "trial_budget": 2},
        # the simulator needs a bigger world than these 60 users (tests/flows/test_pipeline_simulate.py
        # runs the pipeline's simulate step on its own tiny world)
        "simulate": False,
        "overrides": [*TINY_OVERRIDES, f"tracking.tracking_uri={mlflow_url}"],
    }


def wait_for_deployment(prefect: httpx.Client, timeout: float = 60) -> dict[str, Any]:
    """Return the served deployment of FLOW once the serve process has registered it."""
    deadline = time.monotonic() + timeout
    while True:
        response = prefect.get(f"/deployments/name/{FLOW}/{DEPLOYMENT}")
        if response.status_code == 200 or time.monotonic() > deadline:
            response.raise_for_status()
            return response.json()
        time.sleep(0.5)


def flow_run_logs(prefect: httpx.Client, flow_run_id: str) -> str:
    """Return the last log lines of a flow run, for failure messages."""
    body = {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "sort": "TIMESTAMP_DESC", "limit": 40}
    logs = prefect.post("/logs/filter", json=body).json()
    return "\n".join(entry["message"] for entry in reversed(logs))


def wait_for_terminal_state(prefect: httpx.Client, flow_run_id: str, timeout: float) -> dict[str, Any]:
    """Poll the flow run (as the UI's run page does) until it reaches a terminal state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = prefect.get(f"/flow_runs/{flow_run_id}").json()
        if run["state_type"] in TERMINAL_STATES:
            return run
        time.sleep(2)
    raise AssertionError(f"flow run {flow_run_id} not finished after {timeout:.0f} s")


@pytest.fixture(scope="module")
def deployment(prefect: httpx.Client) -> dict[str, Any]:
    """The deployment of FLOW as served by flows/serve.py."""
    return wait_for_deployment(prefect)


@pytest.fixture(scope="module")
def flow_run(stack: Stack, prefect: httpx.Client, deployment: dict[str, Any]) -> dict[str, Any]:
    """Trigger the deployment through the REST call the UI's "Run" button makes; return the finished run."""
    started = time.monotonic()
    body = {
        "parameters": form_parameters(stack.mlflow_url),
        "state": {"type": "SCHEDULED", "message": "Run from the Prefect UI"},
    }
    response = prefect.post(f"/deployments/{deployment['id']}/create_flow_run", json=body)
    assert response.status_code == 201, response.text
    run = wait_for_terminal_state(prefect, response.json()["id"], timeout=900)
    print(f"\nflow run {run['name']} {run['state_type']} after {time.monotonic() - started:.1f} s")
    serve_log = log_tail(next(s for s in stack.services if s.name == "serve"), lines=40)
    explanation = f"{flow_run_logs(prefect, run['id'])}\n--- serve log\n{serve_log}"
    assert run["state_type"] == "COMPLETED", explanation
    return run


@pytest.fixture(scope="module")
def mlflow_run(mlflow: httpx.Client, flow_run: dict[str, Any]) -> dict[str, Any]:
    """The (top-level) MLflow run the flow run logged, found through MLflow's REST API."""
    experiment = mlflow.get("/experiments/get-by-name", params={"experiment_name": EXPERIMENT})
    assert experiment.status_code == 200, experiment.text
    experiment_id = experiment.json()["experiment"]["experiment_id"]
    search = {"experiment_ids": [experiment_id], "filter": "attributes.status = 'FINISHED'"}
    runs = mlflow.post("/runs/search", json=search).json().get("runs", [])
    refits = [
        run
        for run in runs
        if "mlflow.parentRunId" not in run_tags(run) and run_tags(run).get("model") == "two_tower"
    ]
    assert len(refits) == 1, runs
    return refits[0]


@pytest.fixture(scope="module")
def finished_runs(mlflow: httpx.Client, flow_run: dict[str, Any]) -> list[dict[str, Any]]:
    """Every finished MLflow run of the experiment."""
    experiment = mlflow.get("/experiments/get-by-name", params={"experiment_name": EXPERIMENT}).json()
    search = {"experiment_ids": [experiment["experiment"]["experiment_id"]], "max_results": 100}
    return mlflow.post("/runs/search", json=search).json().get("runs", [])


def run_tags(run: dict[str, Any]) -> dict[str, str]:
    """Return an MLflow REST run's tags as a dict."""
    return {item["key"]: item["value"] for item in run["data"].get("tags", [])}


def test_deployment_offers_a_typed_form(deployment: dict[str, Any]) -> None:
    schema = deployment["parameter_openapi_schema"]["properties"]
    assert "synthetic" in schema["dataset"]["enum"]
    assert schema["split"]["enum"][0] == "leave_last_out"
    assert schema["overrides"]["anyOf"][0] == {"type": "array", "items": {"type": "string"}}
    assert all(field.get("description") for field in schema.values())
    assert deployment["enforce_parameter_schema"] is True


def test_the_form_rejects_an_unknown_data_set(
    stack: Stack, prefect: httpx.Client, deployment: dict[str, Any]
) -> None:
    parameters = {**form_parameters(stack.mlflow_url), "dataset": "imdb"}
    body = {"parameters": parameters, "state": {"type": "SCHEDULED"}}
    response = prefect.post(f"/deployments/{deployment['id']}/create_flow_run", json=body)
    assert response.status_code == 409
    assert "imdb" in response.text


def test_triggered_run_is_tracked_in_mlflow(mlflow: httpx.Client, mlflow_run: dict[str, Any]) -> None:
    params = {item["key"]: item["value"] for item in mlflow_run["data"]["params"]}
    metrics = {item["key"]: item["value"] for item in mlflow_run["data"]["metrics"]}
    assert params["data.name"] == "synthetic"
    assert params["encoder.name"] == "none"
    assert params["model.embedding_dim"] in {"16", "32", "64", "128", "256"}  # the search's chosen size
    assert 0.0 <= metrics["final/test/ndcg_at_10"] <= 1.0
    assert metrics["final/test/n_users"] == 60
    artifacts = mlflow.get("/artifacts/list", params={"run_id": mlflow_run["info"]["run_id"]}).json()
    assert {"config.yaml", "metrics.json"} <= {item["path"] for item in artifacts["files"]}


def test_the_search_left_a_parent_run_with_nested_trials(finished_runs: list[dict[str, Any]]) -> None:
    by_id = {run["info"]["run_id"]: run for run in finished_runs}
    parents = [run_tags(run).get("mlflow.parentRunId") for run in finished_runs]
    trial_parents = [parent for parent in parents if parent is not None]
    assert len(trial_parents) >= 2
    (parent_id,) = set(trial_parents)
    assert parent_id in by_id


def test_the_candidate_was_gated_and_promoted(mlflow: httpx.Client, mlflow_run: dict[str, Any]) -> None:
    champion = mlflow.get("/registered-models/alias", params={"name": REGISTERED_MODEL, "alias": "champion"})
    assert champion.status_code == 200, champion.text
    version = champion.json()["model_version"]
    tags = {item["key"]: item["value"] for item in version.get("tags", [])}
    assert tags["gate.status"] == "passed"
    assert "gate.reasons" in tags
    assert version["run_id"] == mlflow_run["info"]["run_id"]


def open_mlflow(page: Any, url: str, shows: str) -> None:
    """Open an MLflow UI page, wait until it shows `shows`, and close the assistant side panel if open."""
    page.goto(url)
    page.get_by_text(shows).first.wait_for()
    page.wait_for_timeout(1000)  # the side panel renders after the page content
    close = page.get_by_role("button", name="Close")
    if close.count():
        close.first.click()
        close.first.wait_for(state="hidden")


def test_a_person_sees_the_form_and_the_run(
    stack: Stack,
    browser: Any,
    deployment: dict[str, Any],
    flow_run: dict[str, Any],
    mlflow_run: dict[str, Any],
    screenshot_dir: Path,
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)

    page.goto(f"{stack.prefect_url}/deployments/deployment/{deployment['id']}/run")
    page.get_by_text("run the Optuna study first").first.wait_for()
    page.get_by_text("extra Hydra overrides").first.wait_for()
    page.screenshot(path=screenshot_dir / "prefect-deployment-form.png", full_page=True)

    page.goto(f"{stack.prefect_url}/runs/flow-run/{flow_run['id']}")
    page.get_by_text(flow_run["name"]).first.wait_for()
    page.get_by_text("Completed").first.wait_for()
    page.screenshot(path=screenshot_dir / "prefect-flow-run.png", full_page=True)

    info = mlflow_run["info"]
    experiment_url = f"{stack.mlflow_url}/#/experiments/{info['experiment_id']}"
    open_mlflow(page, f"{experiment_url}/runs?workflowType=machine_learning", info["run_name"])
    page.screenshot(path=screenshot_dir / "mlflow-experiment.png", full_page=True)

    run_url = f"{experiment_url}/runs/{info['run_id']}?workflowType=machine_learning"
    open_mlflow(page, run_url, info["run_name"])
    page.get_by_text("final/test/ndcg_at_10").first.wait_for()
    page.screenshot(path=screenshot_dir / "mlflow-run.png", full_page=True)

    open_mlflow(page, f"{stack.mlflow_url}/#/models/{REGISTERED_MODEL}", REGISTERED_MODEL)
    page.get_by_text("champion").first.wait_for()
    page.screenshot(path=screenshot_dir / "mlflow-registered-model.png", full_page=True)
    page.close()
    shots = sorted(path.name for path in screenshot_dir.glob("*.png"))
    print(f"\nscreenshots in {screenshot_dir}: {shots}")
    assert {"prefect-deployment-form.png", "mlflow-run.png", "mlflow-registered-model.png"} <= set(shots)


def test_a_champion_moved_around_the_gates_is_put_back_and_shown_on_its_page(
    stack: Stack,
    browser: Any,
    mlflow: httpx.Client,
    mlflow_run: dict[str, Any],
    screenshot_dir: Path,
    tmp_path: Path,
) -> None:
    """Through the REST API (the calls the UI's alias editor makes): champion moved to a failed-gate
    version; the next explorec command puts the gated champion back, and the version page says why."""
    import os
    import subprocess
    import sys

    alias = {"name": REGISTERED_MODEL, "alias": "champion"}
    gated = mlflow.get("/registered-models/alias", params=alias).json()["model_version"]
    created = mlflow.post(
        "/model-versions/create",
        json={
            "name": REGISTERED_MODEL,
            "source": gated["source"],
            "run_id": gated["run_id"],
            "model_id": gated.get("model_id") or gated["source"].removeprefix("models:/"),
            "tags": [{"key": "gate.status", "value": "failed"}],
        },
    )
    assert created.status_code == 200, created.text
    moved = created.json()["model_version"]["version"]
    assert mlflow.post("/registered-models/alias", json={**alias, "version": moved}).status_code == 200

    command = [sys.executable, "-m", "explorec.cli", "promote", "--dry-run"]
    env = {**os.environ, "EXPLOREC_HOME": str(tmp_path)}
    result = subprocess.run(
        [*command, f"tracking.tracking_uri={stack.mlflow_url}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert (
        f"@champion was moved to v{moved} (gate status 'failed') outside `explorec promote`" in result.stderr
    )
    assert "Traceback" not in result.stderr
    back = mlflow.get("/registered-models/alias", params=alias).json()["model_version"]
    assert back["version"] == gated["version"]

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    open_mlflow(page, f"{stack.mlflow_url}/#/models/{REGISTERED_MODEL}/versions/{moved}", "outside")
    page.get_by_text(f"moved back to v{gated['version']}").first.wait_for()
    page.screenshot(path=screenshot_dir / "mlflow-version-moved-around-the-gates.png", full_page=True)
    open_mlflow(page, f"{stack.mlflow_url}/#/models/{REGISTERED_MODEL}/versions/{gated['version']}", "Gate:")
    page.get_by_text("Gate: PASSED").first.wait_for()
    assert page.get_by_text("Gate: PASSED").first.bounding_box()["y"] < 1000  # visible without scrolling
    page.screenshot(path=screenshot_dir / "mlflow-version-gate-decision.png")
    page.close()
