"""One Prefect home: a pipeline run from the command line shows in the Prefect UI of a later `explorec up`.

A fresh project folder; `explorec pipeline` runs first with no server (Prefect's temporary server on the
home's database), then `explorec up --detach` starts the servers. The Prefect UI lists the run, its
artifact links the MLflow run page, the MLflow run names the flow run; a command run while the servers are
up goes straight to them. The ports come from EXPLOREC_PREFECT_PORT / EXPLOREC_MLFLOW_PORT, the defaults
of both the links and `explorec up`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from explorec.pipeline.servers import free_port, read_state, stop_services, store_layout
from tests.e2e.conftest import RetryUnavailable
from tests.e2e.test_ui_e2e import open_mlflow
from tests.reliability.helpers import TINY, environment

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A fresh project folder; what `explorec up` recorded there is stopped afterwards, even on failure."""
    folder = tmp_path / "project"
    folder.mkdir()
    yield folder
    stop_services(read_state(store_layout(folder)))


def explorec(home: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m explorec.cli <args>` on `home` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "explorec.cli", *args],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=1200,
    )


def flow_runs(prefect: httpx.Client, flow_name: str) -> list[dict[str, Any]]:
    """Return the flow runs of flow `flow_name` that the Prefect API knows."""
    body = {"flows": {"name": {"any_": [flow_name]}}}
    response = prefect.post("/flow_runs/filter", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_command_line_pipeline_shows_in_the_prefect_ui_of_a_later_up(
    home: Path, browser: Any, screenshot_dir: Path
) -> None:
    prefect_port, mlflow_port = free_port(), free_port()
    prefect_url, mlflow_url = f"http://127.0.0.1:{prefect_port}", f"http://127.0.0.1:{mlflow_port}"
    env = environment(home, EXPLOREC_PREFECT_PORT=str(prefect_port), EXPLOREC_MLFLOW_PORT=str(mlflow_port))
    env.pop("PREFECT_API_URL", None)

    done = explorec(home, env, "pipeline", *TINY, "pipeline.simulate=false", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.splitlines()[-1])
    run_id, experiment_id = summary["run_id"], summary["experiment_id"]
    run_page = f"{mlflow_url}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"

    up = explorec(home, env, "up", "--detach", "--no-serve")
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"Prefect UI:  {prefect_url}" in up.stdout  # the ports the links were made with

    with (
        httpx.Client(base_url=f"{prefect_url}/api", timeout=60, transport=RetryUnavailable()) as prefect,
        httpx.Client(base_url=f"{mlflow_url}/api/2.0/mlflow", timeout=30) as mlflow,
    ):
        (flow_run,) = flow_runs(prefect, "pipeline")  # the command-line run, in the home's database
        assert flow_run["state_type"] == "COMPLETED"
        artifacts = prefect.post(
            "/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [flow_run["id"]]}}}
        ).json()
        (artifact,) = [item for item in artifacts if item["key"] == "pipeline"]
        assert f"]({run_page})" in artifact["data"]  # a link to the MLflow run page, not a store path
        assert "sqlite:" not in artifact["data"] and "mlflow ui" not in artifact["data"]

        registration = summary["registration"]
        name, version = registration["registered_model"], str(registration["version"])
        version_page = f"{mlflow_url}/#/models/{name}/versions/{version}"
        assert f"]({version_page})" in artifact["data"]
        stored = mlflow.get("/model-versions/get", params={"name": name, "version": version}).json()
        version_tags = {item["key"] for item in stored["model_version"].get("tags", [])}
        assert {"gate.status", "gate.reasons", "gate.decision"} <= version_tags
        assert not [key for key in version_tags if key.startswith("metric.")]  # a handful of tags, no metrics

        run = mlflow.get("/runs/get", params={"run_id": run_id}).json()["run"]
        tags = {item["key"]: item["value"] for item in run["data"]["tags"]}
        assert tags["explorec.prefect_flow_run_id"] == flow_run["id"]
        assert tags["explorec.prefect_flow_run_url"] == f"{prefect_url}/runs/flow-run/{flow_run['id']}"

        # a command while the servers run uses their Prefect API: the run shows at once, no second home
        quick = explorec(home, env, "preprocess", "--force-flow", *TINY[:4])
        assert quick.returncode == 0, quick.stderr[-3000:]
        assert "Starting temporary server" not in quick.stderr
        assert len(flow_runs(prefect, "preprocess")) == 1

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(f"{prefect_url}/runs")
    page.get_by_text(flow_run["name"]).first.wait_for()
    page.screenshot(path=screenshot_dir / "prefect-runs-after-up.png", full_page=True)

    page.goto(f"{prefect_url}/artifacts/artifact/{artifact['id']}")
    link = page.locator(f'a[href="{run_page}"]').first
    link.wait_for()
    assert link.bounding_box() is not None
    page.screenshot(path=screenshot_dir / "prefect-cli-run-artifact.png", full_page=True)

    open_mlflow(page, run_page, run["info"]["run_name"])
    page.get_by_text("explorec.prefect_flow_run_id").first.wait_for()
    page.screenshot(path=screenshot_dir / "mlflow-run-linked-from-prefect.png", full_page=True)

    verdict = "Gate: PASSED" if registration["gate_passed"] else "Gate: FAILED"
    open_mlflow(page, version_page, verdict)
    assert page.get_by_text(verdict).first.bounding_box()["y"] < 1000  # in the first screen, no scrolling
    page.screenshot(path=screenshot_dir / "mlflow-version-decision-cli-run.png")  # the first screen only
    page.close()

    assert explorec(home, env, "down").returncode == 0
