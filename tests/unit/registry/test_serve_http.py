"""The champion served over HTTP by `mlflow models serve --env-manager local` on 127.0.0.1: answers a valid
request, and refuses malformed JSON, malformed requests and oversized calls with 4xx (never 5xx)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import mlflow
import pytest

from explorec.config.registry import GatesConfig
from explorec.registry.promotion import ModelRegistry
from explorec.serving.bundle import RecommenderBundle
from explorec.serving.latency import free_port, start_model_server, stop_model_server, wait_until_ready
from explorec.serving.pyfunc import log_recommender
from explorec.serving.recommender import Limits

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
NAME = "explorec-served"
METRICS = {
    "final/test/ndcg_at_10": 0.08,
    "final/test/recall_at_20": 0.15,
    "served/policy/intra_list_diversity": 0.7,
    "served/policy/catalog_coverage": 0.4,
    "served/policy/exposure_gini": 0.7,
}


@pytest.fixture
def served_champion(tracking_uri: str, bundle: RecommenderBundle) -> Iterator[str]:
    """Register and promote the tiny model, serve models:/<name>@champion; yield the invocations URL."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        with mlflow.start_run() as run:
            mlflow.log_metrics(METRICS)
            log_recommender(bundle, limits=Limits(max_k=20, max_requests=50))
        registry = ModelRegistry(tracking_uri)
        version = registry.register_candidate(run.info.run_id, NAME)
        assert registry.promote(NAME, version, GatesConfig(), actor="test").promoted
    finally:
        mlflow.set_tracking_uri(previous)
    port = free_port()
    server = start_model_server(f"models:/{NAME}@champion", port, tracking_uri=tracking_uri)
    try:
        wait_until_ready(server, port)
        yield f"http://127.0.0.1:{port}/invocations"
    finally:
        stop_model_server(server)


def post(url: str, body: str) -> httpx.Response:
    """POST a JSON body."""
    return httpx.post(url, content=body, headers={"Content-Type": "application/json"}, timeout=60.0)


def test_served_champion_answers_and_rejects(served_champion: str, bundle: RecommenderBundle) -> None:
    """Valid requests get slates; every kind of bad request gets a 4xx with a message."""
    history = {bundle.item_ids[item] for item in bundle.history(0)}
    shown = [item for item in bundle.item_ids if item not in history][:2]
    requests = [
        {"user_id": bundle.user_ids[0], "k": 5, "seed": 1},
        {"recent_item_ids": [bundle.item_ids[0], "unknown"], "k": 3, "exploration_rate": 1},
        {"k": 4},
        {"user_id": bundle.user_ids[0], "k": 3, "shown_item_ids": shown, "clicked_item_ids": shown[:1]},
    ]
    response = post(served_champion, json.dumps({"dataframe_records": requests}))
    assert response.status_code == 200, response.text
    answers = response.json()["predictions"]
    assert [len(answer["item_ids"]) for answer in answers] == [5, 3, 4, 3]
    assert [answer["history_source"] for answer in answers] == ["user", "request", "none", "user"]
    assert answers[1]["n_unknown_items"] == 1 and all(answers[1]["explored"])
    assert [answer["n_feedback"] for answer in answers] == [0, 0, 0, 2]
    assert not set(shown) & set(answers[3]["item_ids"])

    bad_bodies = {
        "malformed JSON": '{"dataframe_records": [{"user_id": ',
        "no payload key": json.dumps({"rows": requests}),
        "k out of range": json.dumps({"dataframe_records": [{"user_id": "u1", "k": 0}]}),
        "k beyond max_k": json.dumps({"dataframe_records": [{"user_id": "u1", "k": 21}]}),
        "rate not a number": json.dumps({"dataframe_records": [{"exploration_rate": "lots"}]}),
        "ids not a list": json.dumps({"dataframe_records": [{"recent_item_ids": "m1"}]}),
        "clicked not shown": json.dumps(
            {"dataframe_records": [{"shown_item_ids": ["m1"], "clicked_item_ids": ["m2"]}]}
        ),
        "oversized call": json.dumps({"dataframe_records": [{"k": 1}] * 51}),
    }
    for label, body in bad_bodies.items():
        answer = post(served_champion, body)
        assert 400 <= answer.status_code < 500, (label, answer.status_code, answer.text[:500])
    reason = post(served_champion, bad_bodies["k beyond max_k"]).json()["message"]
    assert "k must be >= 1 and <= 20" in reason
