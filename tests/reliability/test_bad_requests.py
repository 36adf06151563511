"""Bad requests against the real pyfunc model: in process (`mlflow.pyfunc.load_model(...).predict`) and over
HTTP from a real `mlflow models serve` of a registered version on a free 127.0.0.1 port.

Every bad request is refused with INVALID_PARAMETER_VALUE (HTTP 400, never 5xx) and a one-line reason that
names the request row and field; a misspelled field gets the closest real one suggested. MLflow's scoring
server prefixes the reason with its own "Failed to predict data '<the frame>'. \\nError: ", so over HTTP the
reason is the text after the last "Error: ".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from explorec.serving.latency import free_port, stop_model_server, wait_until_ready
from explorec.serving.pyfunc import log_recommender
from explorec.serving.recommender import Limits
from tests.unit.registry.conftest import tiny_bundle, tiny_catalogue_dataset

NAME = "explorec-bad-requests"
LIMITS = Limits(max_k=20, max_requests=50, max_history_items=30, max_id_length=64)
LONG = "x" * 65

BAD_REQUESTS: list[tuple[str, list[dict[str, Any]], str]] = [
    (
        "user_ids",
        [{"user_ids": "u1", "k": 3}],
        "request 0: unknown request fields ['user_ids'] (did you mean 'user_id'?)",
    ),
    (
        "shown_items",
        [{"user_id": "u1", "shown_items": ["m1"]}],
        "['shown_items'] (did you mean 'shown_item_ids'?)",
    ),
    (
        "clicked_items",
        [{"user_id": "u1", "shown_item_ids": ["m1"], "clicked_items": ["m1"]}],
        "['clicked_items'] (did you mean 'clicked_item_ids'?)",
    ),
    (
        "two misspellings",
        [{"user_ids": "u1", "shown_items": ["m1"]}],
        "(did you mean 'shown_item_ids' for 'shown_items', 'user_id' for 'user_ids'?)",
    ),
    ("unrelated field", [{"user_id": "u1", "colour": "red"}], "unknown request fields ['colour']; expected"),
    (
        "unknown on row 1",
        [{"user_id": "u1"}, {"user_id": "u2", "usr": "u3"}],
        "request 1: unknown request fields",
    ),
    ("empty record", [{}], "request 0: empty request"),
    ("empty row 1", [{"user_id": "u1"}, {}], "request 1: empty request"),
    ("no records", [], "no requests"),
    ("long user_id", [{"user_id": LONG}], "request 0: user_id has 65 characters; at most 64"),
    (
        "long item id",
        [{"recent_item_ids": ["m1", LONG]}],
        "recent_item_ids has an id of 65 characters; at most 64",
    ),
    ("long shown id", [{"k": 2, "shown_item_ids": [LONG]}], "shown_item_ids has an id of 65 characters"),
    ("too many ids", [{"recent_item_ids": ["m1"] * 31}], "recent_item_ids has 31 items; at most 30"),
    ("k zero", [{"user_id": "u1", "k": 0}], "k must be >= 1 and <= 20, got 0"),
    ("k above max", [{"user_id": "u1", "k": 21}], "k must be >= 1 and <= 20, got 21"),
    ("k fraction", [{"user_id": "u1", "k": 2.5}], "k must be an integer, got 2.5"),
    ("k infinite", [{"user_id": "u1", "k": float("inf")}], "k must be an integer, got inf"),
    ("too many records", [{"k": 1}] * 51, "51 requests in one call; at most 50"),
]
IDS = [label for label, _, _ in BAD_REQUESTS]


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """Log the tiny untrained bundle as the pyfunc model, register it; return (tracking URI, model URI)."""
    folder = tmp_path_factory.mktemp("store")
    tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        # artifacts in the test's folder too, not in ./mlruns of the working directory
        mlflow.set_experiment(
            experiment_id=mlflow.create_experiment(
                "bad-requests", artifact_location=(folder / "artifacts").as_uri()
            )
        )
        with mlflow.start_run():
            info = log_recommender(tiny_bundle(tiny_catalogue_dataset()), limits=LIMITS)
        version = mlflow.register_model(info.model_uri, NAME).version
    finally:
        mlflow.set_tracking_uri(previous)
    return tracking_uri, f"models:/{NAME}/{version}"


@pytest.fixture(scope="module")
def model(registered: tuple[str, str]) -> mlflow.pyfunc.PyFuncModel:
    """Load the registered version in process."""
    tracking_uri, model_uri = registered
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        return mlflow.pyfunc.load_model(model_uri, model_config={"torch_threads": 0})
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.mark.parametrize(("label", "records", "reason"), BAD_REQUESTS, ids=IDS)
def test_bad_request_in_process_is_invalid_parameter_value(
    model: mlflow.pyfunc.PyFuncModel, label: str, records: list[dict[str, Any]], reason: str
) -> None:
    """predict() refuses the request with INVALID_PARAMETER_VALUE (HTTP 400) and a one-line reason."""
    with pytest.raises(MlflowException) as raised:
        model.predict(pd.DataFrame(records))
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE", label
    assert raised.value.get_http_status_code() == 400
    assert reason in raised.value.message and "\n" not in raised.value.message


def test_records_as_dicts_are_checked_the_same_way(model: mlflow.pyfunc.PyFuncModel) -> None:
    """A list of dicts (no DataFrame) reaches the same checks; a misspelled field is named."""
    with pytest.raises(MlflowException, match=r"\['recent_items'\] \(did you mean 'recent_item_ids'\?\)"):
        model.predict([{"recent_items": ["m1"], "k": 2}])


def test_valid_requests_still_answer(model: mlflow.pyfunc.PyFuncModel) -> None:
    """The documented request shapes still get slates: known user, new user, cold start, feedback."""
    answers = model.predict(
        pd.DataFrame(
            [
                {"user_id": "u1", "k": 5},
                {"recent_item_ids": ["m1", "nope"], "k": 3, "exploration_rate": 1},
                {"k": 4},
                {"user_id": "u1", "k": 3, "shown_item_ids": ["m30", "m31"], "clicked_item_ids": ["m31"]},
            ]
        )
    )
    assert [len(items) for items in answers["item_ids"]] == [5, 3, 4, 3]
    assert list(answers["history_source"]) == ["user", "request", "none", "user"]
    assert list(answers["n_feedback"]) == [0, 0, 0, 2]


@pytest.fixture(scope="module")
def server(registered: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Serve the registered version with `mlflow models serve`; yield its invocations URL."""
    tracking_uri, model_uri = registered
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local"]
    with log.open("wb") as sink:  # a file, not a pipe: a chatty server never blocks on a full pipe
        process = subprocess.Popen(
            [*command, "-h", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_ready(process, port)
        yield f"http://127.0.0.1:{port}/invocations"
    finally:
        stop_model_server(process)


def post(url: str, body: str | bytes) -> httpx.Response:
    """POST a JSON body."""
    return httpx.post(url, content=body, headers={"Content-Type": "application/json"}, timeout=120.0)


def served_reason(response: httpx.Response) -> str:
    """Return explorec's reason from the scoring server's error body (after MLflow's 'Error: ' prefix)."""
    return str(response.json()["message"]).rsplit("Error: ", 1)[-1]


@pytest.mark.slow
def test_bad_requests_over_http_are_400_naming_the_field(server: str) -> None:
    """Every bad request gets HTTP 400 with explorec's one-line reason; valid ones still get 200."""
    valid = post(server, json.dumps({"dataframe_records": [{"user_id": "u1", "k": 5}, {"k": 2}]}))
    assert valid.status_code == 200, valid.text
    assert [len(answer["item_ids"]) for answer in valid.json()["predictions"]] == [5, 2]
    failures = []
    for label, records, reason in BAD_REQUESTS:
        response = post(server, json.dumps({"dataframe_records": records}))
        got = served_reason(response) if response.status_code < 500 else response.text[:300]
        if response.status_code != 400 or reason not in got or "\n" in got:
            failures.append((label, response.status_code, got[:300]))
    assert not failures, failures


@pytest.mark.slow
def test_split_orient_and_inputs_formats_are_checked_too(server: str) -> None:
    """A misspelled column in `dataframe_split` and in `inputs` is refused the same way."""
    split = {"dataframe_split": {"columns": ["user_ids", "k"], "data": [["u1", 3]]}}
    inputs = {"inputs": [{"user_id": "u1", "seed": 1, "exploration": 0.5}]}
    for body, reason in ((split, "did you mean 'user_id'?"), (inputs, "['exploration']")):
        response = post(server, json.dumps(body))
        assert response.status_code == 400, response.text[:500]
        assert reason in served_reason(response)


@pytest.mark.slow
def test_a_50_mb_user_id_is_refused_without_being_echoed(server: str) -> None:
    """A 50 MB body holding one user id gets 400 naming user_id, and the answer stays small.

    MLflow's scoring server reads any body whole (it has no size limit; see explorec.serving.pyfunc), so
    the bound is the model's max_id_length, checked once the JSON is parsed.
    """
    size = 50 * 1024 * 1024
    body = json.dumps({"dataframe_records": [{"user_id": "u" * size, "k": 3}]}).encode()
    started = time.perf_counter()
    response = post(server, body)
    elapsed = time.perf_counter() - started
    assert response.status_code == 400, response.text[:500]
    assert f"user_id has {size} characters; at most 64" in served_reason(response)
    assert len(response.content) < 4096, len(response.content)
    assert elapsed < 60
