"""Serving without MLflow: history resolution, cold start, unknown items, policies, request validation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from explorec.data.processed import ProcessedDataset
from explorec.policies.registry import policy_names
from explorec.policies.spec import PolicySpec
from explorec.serving.bundle import BUNDLE_FILES, RecommenderBundle, load_bundle
from explorec.serving.recommender import Limits, Recommender, RequestError, parse_request, parse_requests

from .conftest import tiny_bundle

LIMITS = Limits(max_k=20, max_requests=5, max_history_items=8)


def answer(recommender: Recommender, **fields: object):
    """Return the recommendation for one request given as fields."""
    return recommender.recommend([parse_request(fields, recommender.limits)])[0]


def test_known_user_uses_stored_history_and_never_repeats_it(bundle: RecommenderBundle) -> None:
    """A known user without recent items is encoded from their history, which is excluded from the slate."""
    recommender = Recommender(bundle)
    result = answer(recommender, user_id="u3", k=5, seed=0)
    history_ids = {bundle.item_ids[item] for item in bundle.history(3)}
    assert result.history_source == "user"
    assert not result.cold_start
    assert len(result.item_ids) == len(set(result.item_ids)) == 5
    assert not history_ids & set(result.item_ids)


def test_new_user_without_history_gets_popular_items_through_the_policy(bundle: RecommenderBundle) -> None:
    """Cold start: greedy slots are the most popular items; the policy still explores, logs propensities."""
    recommender = Recommender(bundle)
    greedy = answer(recommender, user_id="stranger", k=4, exploration_rate=0.0, seed=1)
    order = np.lexsort((np.arange(bundle.n_items), -bundle.item_popularity))
    assert greedy.cold_start and greedy.history_source == "none"
    assert greedy.item_ids == [bundle.item_ids[item] for item in order[:4]]
    assert greedy.propensities == [1.0] * 4 and greedy.explored == [False] * 4
    exploring = answer(recommender, k=10, exploration_rate=1.0, seed=1)
    assert all(exploring.explored)
    assert all(0.0 < p <= 1.0 for p in exploring.propensities)


def test_unknown_items_are_ignored_and_counted(bundle: RecommenderBundle) -> None:
    """Unknown ids are dropped and counted; the known ones form the history and are excluded."""
    recommender = Recommender(bundle)
    result = answer(recommender, recent_item_ids=["m1", "nope", "m2", "gone"], k=6, seed=3)
    assert result.n_unknown_items == 2
    assert result.history_source == "request"
    assert not {"m1", "m2"} & set(result.item_ids)
    only_unknown = answer(recommender, recent_item_ids=["nope"], k=3, seed=3)
    assert only_unknown.n_unknown_items == 1 and only_unknown.cold_start


def test_known_user_with_recent_items_appends_them(bundle: RecommenderBundle) -> None:
    """Recent items of a known user extend their stored history (both excluded)."""
    recommender = Recommender(bundle)
    stored = {bundle.item_ids[item] for item in bundle.history(0)}
    recent = next(item for item in bundle.item_ids if item not in stored)
    result = answer(recommender, user_id="u0", recent_item_ids=[recent], k=5, seed=0)
    assert result.history_source == "user+request"
    assert not (stored | {recent}) & set(result.item_ids)


def test_same_seed_same_slate_and_batch_equals_single(bundle: RecommenderBundle) -> None:
    """A seed fixes the slate; a batched call answers each request as a single call would."""
    recommender = Recommender(bundle)
    fields = [{"user_id": "u1", "k": 5, "seed": 9}, {"recent_item_ids": ["m5"], "k": 3, "seed": 2}]
    batch = recommender.recommend(parse_requests(fields, recommender.limits))
    singles = [answer(recommender, **request) for request in fields]
    assert [r.item_ids for r in batch] == [r.item_ids for r in singles]
    assert batch[0].scores == pytest.approx(singles[0].scores, abs=1e-5)


def test_scores_are_user_tower_cosines(bundle: RecommenderBundle) -> None:
    """Greedy scores equal the user vector's dot product with the item vectors, best first."""
    recommender = Recommender(bundle)
    result = answer(recommender, user_id="u2", k=5, exploration_rate=0.0)
    user_vector = recommender.user_vectors([bundle.history(2)], [2])[0]
    expected = recommender.item_vectors @ user_vector
    items = [bundle.item_ids.index(item) for item in result.item_ids]
    assert result.scores == pytest.approx(expected[items].tolist(), abs=1e-5)
    assert result.scores == sorted(result.scores, reverse=True)


@pytest.mark.parametrize("policy", policy_names())
def test_every_policy_serves(dataset: ProcessedDataset, policy: str) -> None:
    """Every registered policy serves k distinct items with propensities in (0, 1]."""
    clustering = ("semantic_cluster", "linucb_novelty", "interest_transition")
    params = {"n_clusters": 3} if policy in clustering else {}
    recommender = Recommender(tiny_bundle(dataset, policy=PolicySpec(policy, 0.3, params)))
    result = answer(recommender, user_id="u4", k=5, seed=0)
    assert len(set(result.item_ids)) == 5
    assert all(0.0 < p <= 1.0 + 1e-9 for p in result.propensities)


def test_bundle_save_load_round_trip(bundle: RecommenderBundle, tmp_path: Path) -> None:
    """A saved bundle loads back (weights-only) and recommends the same slate."""
    files = bundle.save(tmp_path / "bundle")
    assert set(BUNDLE_FILES) <= set(files)
    loaded = load_bundle(files)
    fields = {"user_id": "u5", "k": 5, "seed": 4}
    assert answer(Recommender(loaded), **fields).item_ids == answer(Recommender(bundle), **fields).item_ids


MALFORMED = [
    ({"k": 0}, "k must be >= 1"),
    ({"k": 21}, "<= 20"),
    ({"k": 2.5}, "k must be an integer"),
    ({"k": "10"}, "k must be an integer"),
    ({"exploration_rate": 1.5}, "exploration_rate must lie in [0, 1]"),
    ({"exploration_rate": "high"}, "exploration_rate must be a number"),
    ({"seed": -1}, "seed must be >= 0"),
    ({"recent_item_ids": "m1"}, "recent_item_ids must be a list"),
    ({"recent_item_ids": [1.5]}, "string or integer ids"),
    ({"recent_item_ids": [f"m{i}" for i in range(9)]}, "at most 8"),
    ({"user_id": ["u1"]}, "user_id must be a string"),
    ({"user": "u1"}, "unknown request fields ['user']"),
    ({"shown_item_ids": "m1"}, "shown_item_ids must be a list"),
    ({"clicked_item_ids": [2.5]}, "clicked_item_ids must hold string or integer ids"),
    ({"shown_item_ids": ["m1"], "clicked_item_ids": ["m1", "m2"]}, "not shown: ['m2']"),
]


@pytest.mark.parametrize(("fields", "message"), MALFORMED, ids=[message for _, message in MALFORMED])
def test_malformed_requests_raise(fields: dict[str, object], message: str) -> None:
    """Each malformed field raises RequestError naming the row and the problem."""
    with pytest.raises(RequestError, match=r"request 0: .*" + _escape(message)):
        parse_requests([fields], LIMITS)


def _escape(text: str) -> str:
    """Escape regex metacharacters."""
    import re

    return re.escape(text)


def test_missing_cells_take_defaults() -> None:
    """NaN cells (pandas' missing values) mean 'unset'; a row with nothing set at all is refused."""
    missing = {"user_id": math.nan, "recent_item_ids": math.nan, "k": math.nan, "exploration_rate": math.nan}
    request = parse_request({**missing, "seed": 3}, LIMITS)
    assert request.user_id is None and request.recent_item_ids is None
    assert request.k == 10 and request.exploration_rate is None and request.seed == 3
    with pytest.raises(RequestError, match="empty request"):
        parse_request(missing, LIMITS)


def test_too_many_requests_and_k_beyond_catalogue(bundle: RecommenderBundle) -> None:
    """Oversized calls and slates larger than what is left after the history are refused."""
    with pytest.raises(RequestError, match="6 requests in one call; at most 5"):
        parse_requests([{}] * 6, LIMITS)
    recommender = Recommender(bundle, Limits(max_k=1000))
    with pytest.raises(RequestError, match="items are left after the history"):
        answer(recommender, user_id="u0", k=bundle.n_items)


def test_known_user_vector_is_computed_once(bundle: RecommenderBundle) -> None:
    """The stored-history vector of a known user is cached and reused; results do not change."""
    recommender = Recommender(bundle)
    first = answer(recommender, user_id="u6", k=5, exploration_rate=0.0)
    assert set(recommender._stored_vectors) == {6}
    again = answer(recommender, user_id="u6", k=5, exploration_rate=0.0)
    assert again.item_ids == first.item_ids and again.scores == first.scores
    answer(recommender, user_id="u6", recent_item_ids=["m39"], k=5)
    assert set(recommender._stored_vectors) == {6}


def test_precomputed_known_users_answer_as_computed_on_first_use(bundle: RecommenderBundle) -> None:
    """Vectors computed for every known user at load time give the same slates as per-request encoding."""
    eager, lazy = Recommender(bundle), Recommender(bundle)
    with_history = [row for row in range(len(bundle.user_ids)) if bundle.history(row).size]
    assert eager.precompute_known_users(batch_size=2) == len(with_history) > 2
    for row in with_history:
        fields = {"user_id": bundle.user_ids[row], "k": 5, "exploration_rate": 0.3, "seed": row}
        first, second = answer(eager, **fields), answer(lazy, **fields)
        assert first.item_ids == second.item_ids
        assert first.propensities == second.propensities
        np.testing.assert_allclose(first.scores, second.scores, rtol=1e-5, atol=1e-6)
