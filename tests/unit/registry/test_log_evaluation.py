"""Off-policy evaluation on the service's own log: traffic served by ε-greedy (ε = 0.5) with clicks from a
known, position-free click model; the estimates for a different candidate (ε = 0.1, same towers) are checked
against that candidate's value computed exactly under the same click model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from explorec.evaluation.ope import examination_weights
from explorec.policies.spec import PolicySpec
from explorec.serving.impressions import ImpressionLog
from explorec.serving.log_evaluation import evaluate_on_logs
from explorec.serving.recommender import Limits, Recommender
from explorec.serving.service import FeedbackBody, FixedSource, RecommendationService, RecommendBody
from tests.unit.registry.conftest import tiny_bundle


def click_probability(item_id: str) -> float:
    """The click model: items m0–m9 are liked (0.4), the rest rarely (0.05)."""
    return 0.4 if int(item_id[1:]) < 10 else 0.05


def serve_and_click(service: RecommendationService, n: int, rng: np.random.Generator) -> None:
    """Serve `n` requests of random known users and record clicks drawn from the click model."""
    for _ in range(n):
        request = RecommendBody(user_id=f"u{rng.integers(12)}", k=4, seed=int(rng.integers(2**31)))
        answer = service.recommend(request)
        clicked = [i["item_id"] for i in answer["items"] if rng.random() < click_probability(i["item_id"])]
        if clicked:
            service.feedback(FeedbackBody(impression_id=answer["impression_id"], clicked_item_ids=clicked))


def true_value(candidate: Recommender, users: list[str], rng: np.random.Generator) -> float:
    """The candidate's expected clicks per slot under the click model (its slates sampled many times)."""
    values = []
    for user in users:
        request = candidate_request(user)
        for _ in range(200):
            slate = candidate.recommend([replace(request, seed=int(rng.integers(2**31)))])[0]
            values.extend(click_probability(item) for item in slate.item_ids)
    return float(np.mean(values))


def candidate_request(user: str):
    """A k = 4 request of `user`."""
    from explorec.serving.recommender import parse_request

    return parse_request({"user_id": user, "k": 4}, Limits())


def test_estimates_cover_the_candidates_true_value(dataset, tmp_path: Path) -> None:
    """IPS, SNIPS and DR intervals of the ε=0.1 candidate contain its true clicks per slot."""
    log = ImpressionLog(f"sqlite:///{tmp_path / 'impressions.db'}")
    logging = Recommender(tiny_bundle(dataset, policy=PolicySpec("epsilon_greedy", 0.5)))
    service = RecommendationService(FixedSource(logging), log)
    rng = np.random.default_rng(0)
    serve_and_click(service, 3000, rng)
    candidate = Recommender(tiny_bundle(dataset, policy=PolicySpec("epsilon_greedy", 0.1)))
    evaluation = evaluate_on_logs(candidate, log, seed=1)
    truth = true_value(candidate, [f"u{u}" for u in range(12)], np.random.default_rng(2))
    assert evaluation.n_impressions == 3000 and evaluation.n_slots == 12_000
    assert evaluation.support == pytest.approx(1.0)  # ε-greedy logs support every slot
    assert 500 < evaluation.effective_sample_size < evaluation.n_slots
    for name in ("ips", "snips", "prefix_ips", "prefix_snips"):
        assert evaluation.estimates[name].contains(truth), (name, evaluation.estimates[name], truth)
    logged_truth = float(np.mean([r["clicked"] for batch in log.logged_slots() for r in batch]))
    assert evaluation.logged_value.estimate == pytest.approx(logged_truth)
    lift = evaluation.estimates["prefix_snips"].estimate - logged_truth
    assert evaluation.lift.estimate == pytest.approx(lift)  # what the ope_lift gate reads
    assert evaluation.lift.ci_low < lift < evaluation.lift.ci_high
    assert set(evaluation.metrics()) >= {"ope/ips", "ope/snips_ci_low", "ope/lift_ci_high", "ope/support"}


def test_deterministic_logs_support_only_the_same_choices(dataset, tmp_path: Path) -> None:
    """Greedy traffic (propensity 1) supports a greedy candidate fully and an ε-greedy one only partly."""
    log = ImpressionLog(f"sqlite:///{tmp_path / 'impressions.db'}")
    greedy = Recommender(tiny_bundle(dataset, policy=PolicySpec("greedy", 0.0)))
    service = RecommendationService(FixedSource(greedy), log)
    serve_and_click(service, 200, np.random.default_rng(0))
    heads = [row["propensity_kind"] for batch in log.logged_slots() for row in batch]
    assert set(heads) == {"deterministic"}
    same = evaluate_on_logs(greedy, log)
    assert same.support == 1.0 and same.lift.estimate == pytest.approx(0.0)
    other = Recommender(tiny_bundle(dataset, seed=5, policy=PolicySpec("greedy", 0.0)))
    with pytest.raises(ValueError, match="no support"):
        evaluate_on_logs(other, log)


def test_evaluate_logs_command_records_a_run_and_tags_the_version(
    dataset, isolated_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`explorec evaluate-logs --candidate 2` reads the home's log, prints the table, records v2's metrics."""
    import mlflow
    from mlflow import MlflowClient

    from explorec.cli import main
    from explorec.registry.records import version_metrics
    from explorec.serving.pyfunc import log_recommender

    uri = f"sqlite:///{isolated_home / 'mlruns' / 'mlflow.db'}"
    (isolated_home / "mlruns").mkdir()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    client.create_registered_model("explorec-two-tower")
    for rate in (0.5, 0.1):
        with mlflow.start_run():
            info = log_recommender(tiny_bundle(dataset, policy=PolicySpec("epsilon_greedy", rate)))
        client.create_model_version("explorec-two-tower", info.model_uri)
    log = ImpressionLog("sqlite:///mlruns/impressions.db")
    logging = Recommender(tiny_bundle(dataset, policy=PolicySpec("epsilon_greedy", 0.5)))
    serve_and_click(RecommendationService(FixedSource(logging), log), 400, np.random.default_rng(0))
    assert main(["evaluate-logs", "--candidate", "2"]) == 0
    printed = capsys.readouterr().out
    assert "on 400 logged slates (1600 slots)" in printed and "| candidate snips |" in printed
    recorded = version_metrics(client, client.get_model_version("explorec-two-tower", "2"))
    assert recorded["ope/n_slots"] == 1600 and recorded["ope/lift_ci_low"] < recorded["ope/lift_ci_high"]
    runs = mlflow.search_runs(search_all_experiments=True, filter_string="tags.version = '2'")
    assert len(runs) == 1 and runs["metrics.ope/n_impressions"].iloc[0] == 400
    assert main(["evaluate-logs", "--candidate", "9"]) == 1
    assert "has no version '9'" in capsys.readouterr().err


def test_an_exploration_floor_lets_greedy_traffic_judge_another_policy(dataset, tmp_path: Path) -> None:
    """Greedy traffic with a 0.5 floor supports an ε-greedy candidate; its intervals cover the truth."""
    log = ImpressionLog(f"sqlite:///{tmp_path / 'impressions.db'}")
    greedy = Recommender(tiny_bundle(dataset, policy=PolicySpec("greedy", 0.0)), exploration_floor=0.5)
    serve_and_click(RecommendationService(FixedSource(greedy), log), 3000, np.random.default_rng(0))
    kinds = {row["propensity_kind"] for batch in log.logged_slots() for row in batch}
    assert kinds == {"policy"}
    candidate = Recommender(tiny_bundle(dataset, policy=PolicySpec("epsilon_greedy", 0.2)))
    evaluation = evaluate_on_logs(candidate, log, seed=1)
    truth = true_value(candidate, [f"u{u}" for u in range(12)], np.random.default_rng(2))
    assert evaluation.support == pytest.approx(1.0)
    for name in ("ips", "snips"):
        assert evaluation.estimates[name].contains(truth), (name, evaluation.estimates[name], truth)


def test_registration_evaluates_the_candidate_on_logged_traffic_before_the_gates(
    dataset, isolated_home: Path
) -> None:
    """With a non-empty impression log, register_and_gate records ope/* metrics and decides ope_lift."""
    import mlflow

    from explorec.pipeline.config import load_config
    from explorec.pipeline.registration import register_and_gate
    from explorec.registry.records import version_metrics
    from explorec.serving.pyfunc import log_recommender
    from explorec.tracking.store import configure_tracking

    cfg = load_config(
        [
            "gates.ndcg_at_10.threshold=0.0",
            "gates.recall_at_20.threshold=0.0",
            "gates.intra_list_diversity.threshold=0.0",
            "gates.catalog_coverage.threshold=0.0",
            "gates.exposure_gini.threshold=1.0",
            "gates.ope_min_effective_samples=10",
        ]
    )
    configure_tracking(cfg.tracking)
    metrics = {
        "final/test/ndcg_at_10": 0.08,
        "final/test/recall_at_20": 0.15,
        "served/policy/intra_list_diversity": 0.7,
        "served/policy/catalog_coverage": 0.4,
        "served/policy/exposure_gini": 0.7,
    }
    with mlflow.start_run() as run:
        mlflow.log_metrics(metrics)
        log_recommender(tiny_bundle(dataset, policy=PolicySpec("epsilon_greedy", 0.1)))
    log = ImpressionLog(cfg.service.impression_log)
    logging = Recommender(tiny_bundle(dataset, policy=PolicySpec("epsilon_greedy", 0.5)))
    serve_and_click(RecommendationService(FixedSource(logging), log), 300, np.random.default_rng(0))
    log.close()
    outcome = register_and_gate(cfg, run.info.run_id)
    assert "ope_lift" in outcome.decision_markdown
    client = mlflow.MlflowClient()
    version = client.get_model_version(outcome.registered_model, outcome.version)
    assert version_metrics(client, version)["ope/n_slots"] == 1200


def test_the_gates_lift_is_snips_minus_the_logged_mean_with_the_pairs_interval() -> None:
    """Worked on paper: w = (1, 1, 2, 0), r = (1, 0, 1, 0): SNIPS 3/4, logged 1/2, lift 1/4; the pair's
    linearised terms (−1/4, −1/4, 0, 1/2) have sample sd √(1/8), so the interval is 1/4 ± 1.96·√(1/8)/2."""
    from explorec.serving.log_evaluation import snips_lift

    lift = snips_lift(np.array([1.0, 1.0, 2.0, 0.0]), np.array([1.0, 0.0, 1.0, 0.0]))
    half = 1.959964 * np.sqrt(1 / 8) / 2
    assert lift.estimate == pytest.approx(0.25)
    assert (lift.ci_low, lift.ci_high) == pytest.approx((0.25 - half, 0.25 + half), rel=1e-5)
    with pytest.raises(ValueError, match="no logged slot"):
        snips_lift(np.zeros(3), np.ones(3))


def position_click_probability(item_id: str, slot: int) -> float:
    """A position-based click model: θ_slot · the item's relevance (`click_probability`)."""
    return float(examination_weights(slot + 1)[slot]) * click_probability(item_id)


def test_position_based_estimates_replay_the_logging_model_with_its_pooled_floor(
    dataset, tmp_path: Path
) -> None:
    """Greedy traffic with a 0.3 floor over its best 12 items, position-based clicks: the replayed exposures
    make the ε-greedy candidate's position-based intervals contain its true clicks per slot, and the lift is
    theirs; without a loader of the logging model the evaluation says why and falls back to prefix SNIPS."""
    log = ImpressionLog(f"sqlite:///{tmp_path / 'impressions.db'}")
    logging = Recommender(
        tiny_bundle(dataset, policy=PolicySpec("greedy", 0.0)),
        exploration_floor=0.3,
        exploration_floor_pool=12,
    )
    service = RecommendationService(FixedSource(logging, "logger", "3"), log)
    rng = np.random.default_rng(0)
    for _ in range(2000):
        request = RecommendBody(user_id=f"u{rng.integers(12)}", k=4, seed=int(rng.integers(2**31)))
        answer = service.recommend(request)
        clicked = [
            slot["item_id"]
            for position, slot in enumerate(answer["items"])
            if rng.random() < position_click_probability(slot["item_id"], position)
        ]
        if clicked:
            service.feedback(FeedbackBody(impression_id=answer["impression_id"], clicked_item_ids=clicked))
    heads = {
        (row["model_name"], row["exploration_floor"], row["floor_pool"])
        for b in log.logged_slots()
        for row in b
    }
    assert heads == {("logger", 0.3, 12)}
    candidate = Recommender(tiny_bundle(dataset, policy=PolicySpec("epsilon_greedy", 0.1)))
    loaded: list[tuple[str, str]] = []

    def loader(name: str, version: str) -> Recommender:
        loaded.append((name, version))
        return logging

    evaluation = evaluate_on_logs(candidate, log, seed=1, logging_recommender=loader)
    assert set(loaded) == {("logger", "3")} and evaluation.why_no_exposures == ""
    values = []
    rng = np.random.default_rng(2)
    for user in range(12):
        for _ in range(200):
            request = replace(candidate_request(f"u{user}"), seed=int(rng.integers(2**31)))
            slate = candidate.recommend([request])[0]
            values.extend(position_click_probability(item, s) for s, item in enumerate(slate.item_ids))
    truth = float(np.mean(values))
    for name in ("pbm_ips", "pbm_snips", "pbm_dr"):
        assert evaluation.estimates[name].contains(truth), (name, evaluation.estimates[name], truth)
    logged = evaluation.logged_value.estimate
    assert evaluation.lift.estimate == pytest.approx(evaluation.estimates["pbm_snips"].estimate - logged)
    without = evaluate_on_logs(candidate, log, seed=1)
    assert (
        without.why_no_exposures == "no loader of the logging models given"
        and "pbm_snips" not in without.estimates
    )
    assert without.lift.estimate == pytest.approx(without.estimates["prefix_snips"].estimate - logged)
    other = Recommender(tiny_bundle(dataset, seed=5, policy=PolicySpec("greedy", 0.0)))
    mismatched = evaluate_on_logs(candidate, log, seed=1, logging_recommender=lambda name, version: other)
    assert "no exposure under the replayed logging model" in mismatched.why_no_exposures
    assert "pbm_snips" not in mismatched.estimates


def test_a_log_written_before_the_floor_was_recorded_opens_and_evaluates_without_exposures(
    dataset, tmp_path: Path
) -> None:
    """A log whose impressions table lacks the floor columns gets them when opened (NULL in its old rows,
    so the evaluation says the floor is unknown and keeps the other estimators); new slates record theirs."""
    import sqlite3

    path = tmp_path / "old.db"
    logging = Recommender(tiny_bundle(dataset, policy=PolicySpec("epsilon_greedy", 0.5)))
    first = ImpressionLog(f"sqlite:///{path}")
    serve_and_click(RecommendationService(FixedSource(logging), first), 20, np.random.default_rng(0))
    first.close()
    with sqlite3.connect(path) as connection:  # as an older explorec wrote it
        connection.execute("ALTER TABLE impressions DROP COLUMN exploration_floor")
        connection.execute("ALTER TABLE impressions DROP COLUMN floor_pool")
    reopened = ImpressionLog(f"sqlite:///{path}")
    serve_and_click(RecommendationService(FixedSource(logging), reopened), 10, np.random.default_rng(1))
    floors = [rows[0]["exploration_floor"] for rows in reopened.logged_slots(batch_size=4)]
    assert floors.count(None) > 0 and 0.0 in floors
    evaluation = evaluate_on_logs(logging, reopened, logging_recommender=lambda name, version: logging)
    assert "without their exploration floor" in evaluation.why_no_exposures
    assert evaluation.n_impressions == 30 and "prefix_snips" in evaluation.estimates
    reopened.close()
