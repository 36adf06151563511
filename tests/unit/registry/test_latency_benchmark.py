"""The latency benchmark times a logged recommender in-process: one timing per request, real answers."""

from __future__ import annotations

import mlflow

from explorec.serving.bundle import RecommenderBundle
from explorec.serving.latency import benchmark_requests, summarise, time_model
from explorec.serving.pyfunc import log_recommender


def test_summarise_reports_percentiles_in_milliseconds() -> None:
    """p50/p99/mean are of the durations in ms; requests/s is count over wall time."""
    summary = summarise([0.001] * 98 + [0.010, 0.020], wall_s=0.5, cpu_s=0.2)
    assert summary["p50_ms"] == 1.0
    assert 10.0 < summary["p99_ms"] < 20.0
    assert summary["mean_ms"] == (98 * 1.0 + 30.0) / 100
    assert summary["requests_per_s"] == 200.0
    assert summary["cpu_ms_per_request"] == 2.0


def test_requests_mix_known_users_recent_items_and_new_users(bundle: RecommenderBundle) -> None:
    """The request mix has every kind, all exploring with a seed of their own."""
    requests = benchmark_requests(bundle, 200)
    known = [r for r in requests if r.get("user_id") in bundle.user_ids]
    recent = [r for r in requests if "recent_item_ids" in r]
    new = [r for r in requests if str(r.get("user_id", "")).startswith("new-")]
    assert len(known) + len(recent) + len(new) == 200 and known and recent and new
    assert all("no-such-item" in r["recent_item_ids"] for r in recent)
    assert len({r["seed"] for r in requests}) == 200


def test_time_model_loads_a_logged_model_and_times_every_request(
    tracking_uri: str, bundle: RecommenderBundle
) -> None:
    """`time_model` resolves the model URI in the given store and reports the bundle's own catalogue."""
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run():
        info = log_recommender(bundle)
    results = time_model(info.model_uri, 50, http=False, tracking_uri=tracking_uri)
    assert results["catalogue"] == {"n_users": len(bundle.user_ids), "n_items": len(bundle.item_ids)}
    assert results["in_process"]["requests"] == 50
    assert 0.0 < results["in_process"]["p50_ms"] <= results["in_process"]["p99_ms"]
    assert results["policy"].startswith(bundle.policy.name)
