"""The faiss item index: bundle round trip, HNSW recall, served slates over retrieved candidates."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from explorec.config.registry import IndexConfig
from explorec.data.processed import ProcessedDataset
from explorec.policies.registry import policy_names
from explorec.policies.spec import PolicySpec
from explorec.serving.bundle import INDEX_FILE, RecommenderBundle, load_bundle
from explorec.serving.index import EXACT, HNSW, build_index, recall_at_k
from explorec.serving.packaging import INDEX_RECALL_METRIC, attach_index, log_index_report
from explorec.serving.recommender import Recommender, parse_request

from .conftest import tiny_bundle

SMALL_CANDIDATES = IndexConfig(n_candidates=8, retrieve_from=0)
"""Few enough candidates, and no catalogue too small, so that the 40-item catalogue is served through
retrieval."""


def unit_rows(rng: np.random.Generator, n: int, dimension: int) -> np.ndarray:
    """Return n random unit vectors (float32)."""
    rows = rng.standard_normal((n, dimension)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def serve(recommender: Recommender, **fields: object):
    """Return the recommendation for one request given as fields."""
    return recommender.recommend([parse_request(fields, recommender.limits)])[0]


@pytest.mark.parametrize(("exact_below", "kind"), [(100_000, EXACT), (0, HNSW)])
def test_bundle_with_index_round_trips(
    dataset: ProcessedDataset, tmp_path: Path, exact_below: int, kind: str
) -> None:
    """The index is saved as a bundle file and read back as the same kind, answering the same searches."""
    bundle = tiny_bundle(dataset)
    report = attach_index(bundle, replace(SMALL_CANDIDATES, exact_below=exact_below))
    assert report["kind"] == kind
    assert 0.0 <= float(report["recall_at_10"]) <= 1.0
    files = bundle.save(tmp_path / "bundle")
    assert INDEX_FILE in files
    loaded = load_bundle(files)
    assert loaded.item_index is not None and bundle.item_index is not None
    assert loaded.item_index.kind == kind
    assert loaded.item_index.n_candidates == SMALL_CANDIDATES.n_candidates
    assert loaded.item_index.n_rows == bundle.n_items
    queries = bundle.item_vectors[:5]
    expected = bundle.item_index.search(queries, 10)
    np.testing.assert_array_equal(loaded.item_index.search(queries, 10), expected)
    assert load_bundle({name: path for name, path in files.items() if name != INDEX_FILE}).item_index is None


def test_exact_index_recall_is_one(dataset: ProcessedDataset) -> None:
    """Below `exact_below` the index is exact: recall@10 against brute force is 1."""
    bundle = tiny_bundle(dataset)
    assert attach_index(bundle, IndexConfig())["recall_at_10"] == pytest.approx(1.0)


def test_hnsw_recall_at_10_on_a_synthetic_catalogue() -> None:
    """HNSW over 30k random unit vectors (64-d, the hardest kind: no cluster structure) finds ≥ 95% of the
    exact top 10."""
    rng = np.random.default_rng(0)
    items, queries = unit_rows(rng, 30_000, 64), unit_rows(rng, 200, 64)
    index = build_index(items, IndexConfig(exact_below=10_000, ef_construction=64))
    assert index.kind == HNSW
    assert recall_at_k(index, queries, items, k=10) >= 0.95


def requests_of(bundle: RecommenderBundle) -> list[dict[str, object]]:
    """Known users, a new user with recent items and feedback, and a cold-start user."""
    known = [{"user_id": user, "k": 5, "seed": 1} for user in bundle.user_ids]
    recent = {"recent_item_ids": ["m1", "m12"], "k": 6, "seed": 2, "shown_item_ids": ["m3", "m4"]}
    return [*known, recent, {"user_id": "stranger", "k": 4, "seed": 3}]


@pytest.mark.parametrize("exact_below", [100_000, 0])
def test_greedy_slates_with_the_index_equal_brute_force(dataset: ProcessedDataset, exact_below: int) -> None:
    """A greedy policy serves the same slates and scores from retrieved candidates as from every item."""
    bundle = tiny_bundle(dataset, policy=PolicySpec("greedy", 0.0))
    brute = Recommender(bundle)
    indexed_bundle = tiny_bundle(dataset, policy=PolicySpec("greedy", 0.0))
    attach_index(indexed_bundle, replace(SMALL_CANDIDATES, exact_below=exact_below))
    indexed = Recommender(indexed_bundle)
    requests = requests_of(bundle)
    assert all(indexed.retrieval_size(parse_request(r, indexed.limits), np.zeros(6)) for r in requests)
    batch = indexed.recommend([parse_request(fields, indexed.limits) for fields in requests])
    for fields, batched in zip(requests, batch, strict=True):
        expected, served = serve(brute, **fields), serve(indexed, **fields)
        assert served.item_ids == expected.item_ids == batched.item_ids
        assert served.scores == pytest.approx(expected.scores, abs=1e-6)


@pytest.mark.parametrize("name", policy_names())
def test_every_policy_serves_from_candidates(dataset: ProcessedDataset, name: str) -> None:
    """Every policy serves k distinct unseen items from the candidates, with propensities in (0, 1]."""
    bundle = tiny_bundle(dataset, policy=PolicySpec(name, 0.5))
    attach_index(bundle, SMALL_CANDIDATES)
    recommender = Recommender(bundle)
    for fields in requests_of(bundle):
        answer = serve(recommender, **fields)
        request = parse_request(fields, recommender.limits)
        history, _, _ = recommender.resolve_history(request)
        seen = {bundle.item_ids[item] for item in history} | set(request.shown_item_ids)
        assert len(set(answer.item_ids)) == request.k and not seen & set(answer.item_ids)
        assert all(0.0 < p <= 1.0 for p in answer.propensities)


def test_exploration_stays_among_the_retrieved_candidates(dataset: ProcessedDataset) -> None:
    """ε-greedy at rate 1 draws uniformly from the top candidates: propensity 1 / remaining candidates."""
    bundle = tiny_bundle(dataset, policy=PolicySpec("epsilon_greedy", 1.0))
    attach_index(bundle, SMALL_CANDIDATES)
    recommender = Recommender(bundle)
    user = 0
    history = bundle.history(user)
    vector = recommender.user_vectors([history], [user])[0]
    scores = bundle.item_vectors @ vector
    scores[history] = -np.inf
    top = {bundle.item_ids[item] for item in np.argsort(-scores)[: SMALL_CANDIDATES.n_candidates]}
    for seed in range(5):
        answer = serve(recommender, user_id="u0", k=3, seed=seed)
        assert set(answer.item_ids) <= top
        assert answer.propensities == pytest.approx([1 / 8, 1 / 7, 1 / 6])


def test_added_items_enter_the_index(dataset: ProcessedDataset) -> None:
    """An item added after training (or given a new vector) is retrieved and served by the next request."""
    bundle = tiny_bundle(dataset, policy=PolicySpec("greedy", 0.0))
    attach_index(bundle, replace(SMALL_CANDIDATES, exact_below=0))
    recommender = Recommender(bundle)
    history = bundle.history(2)
    vector = recommender.user_vectors([history], [2])[0]
    best = vector / np.linalg.norm(vector)
    added, updated = recommender.add_items(["new"], ["New (2026)"], best[None, :])
    assert (added, updated) == (1, 0)
    assert serve(recommender, user_id="u2", k=1).item_ids == ["new"]
    worst = next(item for item in np.argsort(bundle.item_vectors[:40] @ vector) if item not in history)
    recommender.add_items(["new", bundle.item_ids[worst]], ["New", "Renewed"], np.stack([-best, best]))
    assert serve(recommender, user_id="u2", k=1).item_ids == [bundle.item_ids[worst]]


def test_small_catalogues_are_served_whole(dataset: ProcessedDataset) -> None:
    """Below `retrieve_from` items every item is scored, so exploration covers the whole catalogue."""
    bundle = tiny_bundle(dataset)
    attach_index(bundle, IndexConfig(n_candidates=8))
    recommender = Recommender(bundle)
    request = parse_request({"user_id": "u0", "k": 3}, recommender.limits)
    assert recommender.retrieval_size(request, bundle.history(0)) is None


def test_logged_model_serves_through_its_index_and_the_version_carries_its_recall(
    dataset: ProcessedDataset, tracking_uri: str
) -> None:
    """The index travels as a pyfunc artifact; the registered version has the recall as metric and tag."""
    import mlflow
    import pandas as pd

    from explorec.config.registry import RegistryConfig
    from explorec.registry.promotion import ModelRegistry
    from explorec.serving.pyfunc import log_recommender

    bundle = tiny_bundle(dataset, policy=PolicySpec("greedy", 0.0))
    report = attach_index(bundle, replace(SMALL_CANDIDATES, exact_below=0))
    mlflow.set_tracking_uri(tracking_uri)
    try:
        with mlflow.start_run() as run:
            info = log_recommender(bundle)
            log_index_report(mlflow.MlflowClient(), run.info.run_id, info.model_id, report)
        model = mlflow.pyfunc.load_model(info.model_uri, model_config={"torch_threads": 0})
        registry = ModelRegistry(tracking_uri, RegistryConfig())
        version = registry.register_candidate(run.info.run_id, "indexed")
        recorded = registry.version_metrics("indexed", version)
        logged = mlflow.get_logged_model(info.model_id)
    finally:
        mlflow.set_tracking_uri(None)
    answers = model.predict(pd.DataFrame([{"user_id": "u1", "k": 4}]))
    assert answers["item_ids"][0] == serve(Recommender(bundle), user_id="u1", k=4).item_ids
    assert recorded[INDEX_RECALL_METRIC] == pytest.approx(report["recall_at_10"])
    assert logged.tags["index.kind"] == HNSW
    assert [(metric.key, metric.value) for metric in logged.metrics] == [
        (INDEX_RECALL_METRIC, report["recall_at_10"])
    ]


@pytest.mark.parametrize("name", ["epsilon_greedy", "boltzmann"])
def test_replay_through_the_index_sees_what_serving_saw(dataset: ProcessedDataset, name: str) -> None:
    """Off-policy replay of served slates gives back the propensities they were served with; an item that
    retrieval did not reach for the request gets probability and exposure 0."""
    bundle = tiny_bundle(dataset, policy=PolicySpec(name, 0.5))
    attach_index(bundle, SMALL_CANDIDATES)
    recommender = Recommender(bundle)
    requests = [parse_request(fields, recommender.limits) for fields in requests_of(bundle)]
    answers = recommender.recommend(requests)
    views = recommender.request_views(requests)
    assert all(view.items is not None for view in views)
    rng = np.random.default_rng(0)
    decisions = recommender.logged_decisions(views, [answer.item_ids for answer in answers], rng)
    for answer, decision in zip(answers, decisions, strict=True):
        np.testing.assert_allclose(decision.propensities, answer.propensities, rtol=1e-6)
    view, answer = views[0], answers[0]
    outside = next(item for row, item in enumerate(bundle.item_ids) if row not in set(view.items.tolist()))
    slate = [*answer.item_ids[:2], outside]
    assert recommender.logged_decisions([view], [slate], rng)[0].propensities[2] == 0.0
    theta = np.array([1.0, 0.6, 0.5])
    exposure = recommender.logged_exposures([view], [slate], examination=theta, rng=rng, draws=4)[0]
    assert exposure.of_logged[2] == 0.0 and (exposure.of_logged[:2] > 0).all()


def test_a_replaced_item_vector_reaches_the_vectors_of_users_who_saw_it(dataset: ProcessedDataset) -> None:
    """Precomputed user vectors are not kept past a new vector of one of their history items."""
    bundle = tiny_bundle(dataset, policy=PolicySpec("greedy", 0.0))
    recommender = Recommender(bundle)
    recommender.precompute_known_users()
    request = parse_request({"user_id": "u0", "k": 3}, recommender.limits)
    before = recommender.recommend([request])[0]
    seen = bundle.item_ids[int(bundle.history(0)[-1])]
    recommender.add_items([seen], ["Renewed"], -recommender.item_vectors[[recommender.item_index[seen]]])
    after = recommender.recommend([request])[0]
    expected = recommender.user_vectors([bundle.history(0)], [0])[0] @ recommender.item_vectors.T
    assert after.scores != before.scores
    rows = [recommender.item_index[item] for item in after.item_ids]
    assert after.scores == pytest.approx(expected[rows].tolist(), abs=1e-6)
