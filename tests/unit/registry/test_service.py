"""The recommendation service in-process (FastAPI's test client over the real app and a real SQLite log):
answers are logged slot by slot before they leave, feedback joins by impression id, bad requests get a 4xx
naming the field and log nothing; a registry source follows its alias but never to an ungated version."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from explorec.pipeline.service import RegistrySource
from explorec.serving.bundle import RecommenderBundle
from explorec.serving.impressions import ImpressionLog
from explorec.serving.pyfunc import log_recommender
from explorec.serving.recommender import Limits, Recommender
from explorec.serving.service import FixedSource, RecommendationService, ServingRefusedError, create_app
from tests.unit.registry.conftest import tiny_bundle


@pytest.fixture
def log(tmp_path: Path) -> ImpressionLog:
    """A fresh SQLite impression log."""
    return ImpressionLog(f"sqlite:///{tmp_path / 'impressions.db'}")


@pytest.fixture
def client(bundle: RecommenderBundle, log: ImpressionLog) -> TestClient:
    """The app over the tiny bundle, with a 20 kB body limit."""
    service = RecommendationService(FixedSource(Recommender(bundle, Limits(max_k=20))), log)
    return TestClient(create_app(service, max_body_bytes=20_000))


def test_recommend_logs_every_slot_and_feedback_joins(client: TestClient, log: ImpressionLog) -> None:
    """A served slate is in the log with its propensities; a click on it is joined to its slot."""
    answer = client.post("/recommend", json={"user_id": "u1", "k": 5, "seed": 3, "exploration_rate": 0.5})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body["items"]) == 5 and body["exploration_rate"] == 0.5
    assert all(0.0 < item["propensity"] <= 1.0 and item["explanation"] for item in body["items"])
    assert log.counts() == {"impressions": 1, "slots": 5, "feedback": 0}
    clicked = body["items"][1]["item_id"]
    reply = client.post(
        "/feedback", json={"impression_id": body["impression_id"], "clicked_item_ids": [clicked]}
    )
    assert reply.status_code == 200 and reply.json()["recorded"] == 1
    rows = [row for batch in log.logged_slots() for row in batch]
    assert [row["item_id"] for row in rows] == [item["item_id"] for item in body["items"]]
    assert [row["clicked"] for row in rows] == [False, True, False, False, False]
    assert [row["propensity"] for row in rows] == pytest.approx([i["propensity"] for i in body["items"]])


def test_explanations_name_a_history_item_or_the_exploration(client: TestClient) -> None:
    """Exploiting slots of a known user cite a liked title; explored slots say they explored."""
    body = client.post(
        "/recommend", json={"user_id": "u2", "k": 10, "seed": 1, "exploration_rate": 0.5}
    ).json()
    for item in body["items"]:
        expected = "explored (uncertain)" if item["explored"] else "because you liked 'Movie"
        assert item["explanation"].startswith(expected), item
    cold = client.post("/recommend", json={"k": 3, "exploration_rate": 0.0}).json()
    assert cold["cold_start"] and all(i["explanation"] == "popular (no history yet)" for i in cold["items"])


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"user_ids": "u1"}, 400, "unknown field 'user_ids'"),
        ({"user_id": "u1", "shown_items": ["m1"]}, 400, "unknown field 'shown_items'"),
        ({"k": "ten"}, 400, "k:"),
        ({"k": 0}, 400, "k must be >= 1"),
        ({"k": 10_000}, 400, "k must be >= 1 and <= 20"),
        ({"exploration_rate": 2.0}, 400, "exploration_rate must lie in [0, 1]"),
        ({"user_id": "u" * 300}, 400, "user_id has 300 characters; at most 256"),
        (
            {"recent_item_ids": [f"m{i}" for i in range(1500)]},
            400,
            "recent_item_ids has 1500 items; at most 1000",
        ),
        ({"clicked_item_ids": ["m1"]}, 400, "clicked_item_ids must also be in shown_item_ids"),
        ({"recent_item_ids": [f"m{i}" for i in range(5000)]}, 413, "request body of"),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_field_and_log_nothing(
    client: TestClient, log: ImpressionLog, body: dict[str, object], status: int, reason: str
) -> None:
    """Each bad request is refused with a one-line reason; the log stays empty."""
    answer = client.post("/recommend", json=body)
    assert answer.status_code == status, answer.text
    assert reason in answer.json()["detail"] and "\n" not in answer.json()["detail"]
    assert log.counts()["impressions"] == 0


def test_invalid_json_and_bad_feedback(client: TestClient) -> None:
    """Invalid JSON is a 400; feedback on an unknown impression a 404, on an item not shown a 400."""
    answer = client.post("/recommend", content=b"{not json", headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and "not valid JSON" in answer.json()["detail"]
    unknown = client.post("/feedback", json={"impression_id": "nope", "clicked_item_ids": ["m1"]})
    assert unknown.status_code == 404 and "not in the impression log" in unknown.json()["detail"]
    served = client.post("/recommend", json={"user_id": "u1", "k": 2, "exploration_rate": 0.0}).json()
    not_shown = {"m39", "m38", "m37"} - {item["item_id"] for item in served["items"]}
    wrong = client.post(
        "/feedback",
        json={"impression_id": served["impression_id"], "clicked_item_ids": [sorted(not_shown)[0]]},
    )
    assert wrong.status_code == 400 and "were not in impression" in wrong.json()["detail"]
    empty = client.post("/feedback", json={"impression_id": served["impression_id"]})
    assert empty.status_code == 400 and "names no" in empty.json()["detail"]


def test_metrics_count_requests_slots_and_exploration(client: TestClient) -> None:
    """GET /metrics reports request counts, the latency histogram and the share of explored slots."""
    explored = 0
    for seed in range(4):
        body = client.post(
            "/recommend", json={"user_id": "u3", "k": 5, "seed": seed, "exploration_rate": 0.5}
        )
        explored += sum(item["explored"] for item in body.json()["items"])
    client.post("/recommend", json={"k": 0})
    text = client.get("/metrics").text
    assert 'explorec_requests_total{endpoint="/recommend",status="200"} 4.0' in text
    assert 'explorec_requests_total{endpoint="/recommend",status="400"} 1.0' in text
    assert "explorec_slots_served_total 20.0" in text
    assert f"explorec_slots_explored_total {float(explored)}" in text
    assert 'explorec_request_seconds_bucket{endpoint="/recommend",le="+Inf"} 5.0' in text
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"]["version"] == "0"


def _register(client: MlflowClient, bundle: RecommenderBundle, name: str, tags: dict[str, str]) -> str:
    """Log the bundle as a pyfunc in a new run and register it with `tags`; return the version."""
    with mlflow.start_run():
        info = log_recommender(bundle)
    version = client.create_model_version(name, info.model_uri, tags=tags).version
    return str(version)


def test_registry_source_follows_the_alias_but_not_to_an_ungated_version(
    tracking_uri: str, bundle: RecommenderBundle, dataset
) -> None:
    """The alias' move to a passed version is served; a move to a failed-gate version is refused."""
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    client.create_registered_model("svc")
    first = _register(client, bundle, "svc", {"gate.status": "passed"})
    second = _register(client, tiny_bundle(dataset, seed=1), "svc", {"gate.status": "passed"})
    failed = _register(client, bundle, "svc", {"gate.status": "failed"})
    client.set_registered_model_alias("svc", "champion", first)
    source = RegistrySource(client, "svc", "champion")
    assert source.current().version == first and source.refresh() is None
    client.set_registered_model_alias("svc", "champion", second)
    assert "now serving svc v2" in (source.refresh() or "")
    assert source.current().version == second
    client.set_registered_model_alias("svc", "champion", failed)
    refusal = source.refresh() or ""
    assert "gate status is 'failed'" in refusal and "still serving v2" in refusal
    assert source.current().version == second
    forced = RegistrySource(client, "svc", "champion")
    with pytest.raises(ServingRefusedError, match="not served"):
        forced.current()
    client.set_model_version_tag("svc", failed, "promotion.forced", "true")
    client.set_model_version_tag("svc", failed, "promotion.reason", "incident 42")
    assert forced.current().version == failed
    assert json.dumps(RegistrySource(client, "svc", "champion").current().version) == f'"{failed}"'


@pytest.fixture(scope="module")
def minilm_texts() -> np.ndarray:
    """The packaged MiniLM's embeddings of the tiny catalogue's texts ('movie 0' … 'movie 39')."""
    from explorec.config import EncoderConfig
    from explorec.encoders.text import encode_in_batches, load_sentence_transformer

    cfg = EncoderConfig(show_progress=False, num_threads=1)
    return encode_in_batches(load_sentence_transformer(cfg), [f"movie {i}" for i in range(40)], cfg)


def text_tower_bundle(dataset, texts: np.ndarray) -> RecommenderBundle:
    """A bundle whose item tower reads MiniLM text (item m39 unknown: its vector comes from text alone)."""
    import torch

    from explorec.config import EncoderConfig, ModelConfig
    from explorec.models.towers import ItemTower
    from explorec.serving.packaging import attach_item_tower

    torch.manual_seed(0)
    model_cfg = ModelConfig(embedding_dim=8, history_length=5, attention_heads=2, use_genres=False)
    known = torch.ones(dataset.n_items, dtype=torch.bool)
    known[39] = False
    tower = ItemTower(
        n_items=dataset.n_items, embedding_dim=8, known_items=known, text_embeddings=torch.from_numpy(texts)
    ).eval()
    base = tiny_bundle(dataset)
    with torch.no_grad():
        base.item_vectors = tower(torch.arange(dataset.n_items)).numpy()
    base.text_embeddings = texts
    attach_item_tower(base, tower.state_dict(), model_cfg, EncoderConfig(), dataset)
    return base


def test_new_items_get_the_towers_text_vector_and_serve_at_once(
    dataset, minilm_texts: np.ndarray, log: ImpressionLog
) -> None:
    """POST /items embeds with the bundle's encoder and item tower: an item with m39's text gets m39's
    (text-only) vector, is served by the next request flagged as new, and survives a service restart."""
    bundle = text_tower_bundle(dataset, minilm_texts)
    expected = bundle.item_vectors[39].copy()
    service = RecommendationService(FixedSource(Recommender(bundle, Limits(max_k=50))), log)
    client = TestClient(create_app(service))
    added = client.post("/items", json={"items": [{"item_id": "new-1", "title": "New", "text": "movie 39"}]})
    assert added.status_code == 200, added.text
    assert added.json()["added"] == 1 and added.json()["n_items"] == 41
    recommender = service.model().recommender
    np.testing.assert_allclose(recommender.item_vectors[40], expected, atol=1e-5)
    slate = client.post("/recommend", json={"user_id": "u0", "k": 30, "exploration_rate": 0.0}).json()
    served = {item["item_id"]: item for item in slate["items"]}
    assert "new-1" in served and served["new-1"]["new_item"]
    assert served["new-1"]["explanation"].startswith("new item (from its text)")
    again = client.post(
        "/items", json={"items": [{"item_id": "new-1", "title": "Renamed", "text": "movie 2"}]}
    )
    assert again.json()["added"] == 0 and again.json()["updated"] == 1
    restarted = RecommendationService(FixedSource(Recommender(text_tower_bundle(dataset, minilm_texts))), log)
    assert restarted.model().recommender.bundle.titles[40] == "Renamed"
    unsupported = RecommendationService(FixedSource(Recommender(tiny_bundle(dataset))), log)
    refused = TestClient(create_app(unsupported)).post(
        "/items", json={"items": [{"item_id": "x", "text": "movie"}]}
    )
    assert refused.status_code == 409 and "without its item tower" in refused.json()["detail"]


def test_item_tower_survives_the_bundle_files(dataset, minilm_texts: np.ndarray, tmp_path: Path) -> None:
    """A saved and reloaded bundle embeds a new item exactly as the in-memory one."""
    from explorec.serving.bundle import load_bundle
    from explorec.serving.new_items import NewItem, NewItemEmbedder

    bundle = text_tower_bundle(dataset, minilm_texts)
    loaded = load_bundle(bundle.save(tmp_path / "bundle"))
    assert loaded.item_tower_spec == bundle.item_tower_spec
    vectors, texts = NewItemEmbedder(loaded).embed([NewItem("n", "N", "movie 39")])
    np.testing.assert_allclose(vectors[0], bundle.item_vectors[39], atol=1e-5)
    np.testing.assert_allclose(texts[0], minilm_texts[39], atol=1e-5)


@pytest.mark.e2e
def test_two_servers_share_one_postgresql_log(bundle: RecommenderBundle, postgres_url: str) -> None:
    """Two services writing one PostgreSQL log at once lose nothing, and feedback joins across them."""
    from concurrent.futures import ThreadPoolExecutor

    from explorec.serving.service import FeedbackBody, RecommendBody

    logs = [ImpressionLog(postgres_url) for _ in range(2)]
    services = [RecommendationService(FixedSource(Recommender(bundle)), log) for log in logs]
    before = logs[0].counts()

    def serve(service: RecommendationService) -> list[str]:
        return [
            service.recommend(RecommendBody(user_id=f"u{i % 12}", k=3))["impression_id"] for i in range(60)
        ]

    with ThreadPoolExecutor(4) as pool:
        served = list(pool.map(serve, services * 2))
    after = logs[1].counts()
    assert after["impressions"] - before["impressions"] == 240
    assert after["slots"] - before["slots"] == 720
    first = served[0][0]
    item = logs[1].slot_items(first)[0]
    assert services[1].feedback(FeedbackBody(impression_id=first, clicked_item_ids=[item]))["recorded"] == 1
    assert "postgres@127.0.0.1" in logs[0].location and "***" not in logs[0].location
    for log in logs:
        log.close()


def test_an_explored_item_outside_every_history_cluster_is_a_new_interest(
    dataset, minilm_texts: np.ndarray
) -> None:
    """Interest clusters of the MiniLM texts: an explored item whose cluster the history never touches is
    explained as a new interest named by central titles; one inside a touched cluster as uncertain."""
    from explorec.serving.explanations import explain_slots, fit_interest_clusters
    from explorec.serving.recommender import Recommendation

    bundle = text_tower_bundle(dataset, minilm_texts)
    clusters = fit_interest_clusters(minilm_texts, bundle.titles, n_clusters=4)
    labels = clusters.labels(minilm_texts)
    recommender = Recommender(bundle)
    history = bundle.history(0)
    touched = set(labels[history[-50:]].tolist())
    outside = next(i for i in range(40) if labels[i] not in touched and i not in history)
    inside = next(i for i in range(40) if labels[i] in touched and i not in history)
    answer = Recommendation(
        user_id="u0",
        item_ids=[f"m{outside}", f"m{inside}"],
        titles=["", ""],
        scores=[0.0, 0.0],
        propensities=[0.5, 0.5],
        explored=[True, True],
        n_unknown_items=0,
        history_source="user",
        cold_start=False,
    )
    reasons = explain_slots(recommender, history, answer, [False, False], clusters)
    assert reasons[0] == f"explored: new interest: {clusters.names[labels[outside]]}"
    assert reasons[1].startswith("explored (uncertain): closest to 'Movie")
    assert all(" / " in name or name.startswith("Movie") for name in clusters.names)
