"""The loop's pieces on a tiny catalogue: simulated traffic through the service, the candidate's simulated
value, the judgement and the coverage count. The whole flow runs in tests/flows/test_loop_flow.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from explorec.pipeline.loop_traffic import (
    Judgement,
    LoopRound,
    LoopWorld,
    coverage,
    judgement_from,
    loop_markdown,
    rounds_frame,
    serve_round,
    simulated_value,
)
from explorec.policies.spec import PolicySpec
from explorec.serving.impressions import ImpressionLog
from explorec.serving.recommender import Recommender
from explorec.serving.service import FixedSource, RecommendationService
from explorec.simulation.environment import position_weights
from tests.unit.registry.conftest import N_ITEMS, tiny_bundle

USERS = ("u0", "u3", "u5", "u8")


def tiny_world(k: int = 4) -> LoopWorld:
    """Four traffic users; items m0–m9 liked (p = 0.6), the rest rarely (0.05); four clusters of ten items."""
    probabilities = np.full((len(USERS), N_ITEMS), 0.05)
    probabilities[:, :10] = 0.6
    clusters = np.arange(N_ITEMS) // 10
    return LoopWorld(
        users=USERS,
        probabilities=probabilities,
        item_rows={f"m{item}": item for item in range(N_ITEMS)},
        clusters=clusters,
        engaged=tuple(frozenset({0}) for _ in USERS),
        position_weights=position_weights(k),
    )


def logged_slates(log: ImpressionLog) -> list[list[dict]]:
    """The log's slot rows grouped by impression, oldest first."""
    slates: dict[str, list[dict]] = {}
    for rows in log.logged_slots():
        for row in rows:
            slates.setdefault(row["impression_id"], []).append(row)
    return list(slates.values())


def served(dataset, tmp_path: Path, policy: PolicySpec, seed: int = 0) -> tuple[ImpressionLog, object]:
    """Serve two visits of every user of the tiny world; return the log and the round's traffic."""
    log = ImpressionLog(f"sqlite:///{tmp_path / f'impressions-{seed}.db'}")
    service = RecommendationService(FixedSource(Recommender(tiny_bundle(dataset, policy=policy))), log)
    world = tiny_world()
    traffic = serve_round(
        service,
        world,
        round_index=1,
        visits=2,
        seed=seed,
        engaged=[set(clusters) for clusters in world.engaged],
    )
    return log, traffic


def test_a_round_logs_every_slate_and_click_and_carries_a_visits_slates_into_the_next(
    dataset, tmp_path: Path
) -> None:
    """2 visits × 4 users = 8 logged slates; the log's clicks are the traffic's; no item twice per user."""
    log, traffic = served(dataset, tmp_path, PolicySpec("epsilon_greedy", 0.3))
    slates = logged_slates(log)
    assert traffic.n_slates == len(slates) == 8 and traffic.n_slots == 32
    assert sum(bool(row["clicked"]) for rows in slates for row in rows) == traffic.clicks
    by_user: dict[str, list[str]] = {}
    for rows in slates:
        by_user.setdefault(rows[0]["user_id"], []).extend(row["item_id"] for row in rows)
    assert set(by_user) == set(USERS)
    assert all(len(items) == len(set(items)) == 8 for items in by_user.values())
    world = tiny_world()
    expected = sum(
        float(world.expected_clicks(USERS.index(rows[0]["user_id"]), [r["item_id"] for r in rows]).sum())
        for rows in slates
    )
    assert traffic.expected_clicks == pytest.approx(expected)
    metrics = traffic.metrics()
    assert metrics["traffic/clicks_per_user"] == traffic.clicks / 4
    assert 0.0 <= metrics["traffic/explored_share"] <= 1.0


def test_the_same_seed_serves_and_clicks_the_same(dataset, tmp_path: Path) -> None:
    """Requests and clicks come from the loop's seeded streams: a rerun logs the same slates and clicks."""
    (tmp_path / "again").mkdir()
    first, _ = served(dataset, tmp_path, PolicySpec("epsilon_greedy", 0.3), seed=3)
    second, _ = served(dataset, tmp_path / "again", PolicySpec("epsilon_greedy", 0.3), seed=3)

    def slots(log: ImpressionLog) -> list[tuple[str, str, bool]]:
        return [(r["user_id"], r["item_id"], bool(r["clicked"])) for rows in logged_slates(log) for r in rows]

    assert slots(first) == slots(second)


def test_new_clusters_count_only_clusters_the_user_had_not_engaged(dataset, tmp_path: Path) -> None:
    """Every user starts engaged with cluster 0 (m0–m9): a click there is no discovery, elsewhere once."""
    log, traffic = served(dataset, tmp_path, PolicySpec("epsilon_greedy", 1.0))
    world = tiny_world()
    found = {}
    for rows in logged_slates(log):
        for row in rows:
            if row["clicked"] and world.clusters[int(row["item_id"][1:])] != 0:
                found.setdefault(row["user_id"], set()).add(world.clusters[int(row["item_id"][1:])])
    assert traffic.new_cluster_clicks == sum(len(clusters) for clusters in found.values())
    assert all(0 in clusters for clusters in traffic.engaged)


def test_a_greedy_candidates_simulated_value_is_its_slates_expected_clicks(dataset, tmp_path: Path) -> None:
    """For a deterministic candidate the sampled value is exact: mean θ_k·p over its own slates' slots."""
    log, _ = served(dataset, tmp_path, PolicySpec("epsilon_greedy", 0.3))
    candidate = Recommender(tiny_bundle(dataset, seed=4, policy=PolicySpec("greedy", 0.0)))
    world = tiny_world()
    number = {user: index for index, user in enumerate(USERS)}
    value = simulated_value(
        candidate, log, lambda user, items: world.expected_clicks(number[user], items), draws=3, seed=0
    )
    from explorec.serving.log_evaluation import logged_batches

    exact = []
    for batch in logged_batches(log):
        for request, answer in zip(batch.requests, candidate.recommend(batch.requests), strict=True):
            exact.extend(world.expected_clicks(number[request.user_id], answer.item_ids))
    assert value == pytest.approx(float(np.mean(exact)))
    assert 0.0 < value < 0.6


def judgement(truth: float, snips: tuple[float, float, float], version: str = "2") -> Judgement:
    """A judgement with the given SNIPS interval (IPS wide, DR narrow and off)."""
    ope = {
        "ope/ips": 0.1,
        "ope/ips_ci_low": 0.0,
        "ope/ips_ci_high": 1.0,
        "ope/snips": snips[0],
        "ope/snips_ci_low": snips[1],
        "ope/snips_ci_high": snips[2],
        "ope/dr": 0.9,
        "ope/dr_ci_low": 0.89,
        "ope/dr_ci_high": 0.91,
        "ope/lift": 0.01,
        "ope/lift_ci_low": -0.02,
        "ope/lift_ci_high": 0.04,
        "ope/effective_sample_size": 120.0,
    }
    return judgement_from(
        ope, version=version, run_id="r", truth=truth, gate_passed=False, gate_reasons=["x"], promoted=False
    )


def test_coverage_counts_each_estimators_intervals_that_contain_the_truth() -> None:
    """Two judged rounds: SNIPS covers once, IPS twice, DR never; the table has one row per round."""
    traffic = {
        "traffic/clicks_per_user": 1.0,
        "traffic/expected_clicks_per_user": 0.9,
        "traffic/new_clusters_per_user": 0.1,
        "traffic/explored_share": 0.2,
        "traffic/ctr": 0.05,
        "traffic/slates": 10.0,
    }
    rounds = [
        LoopRound(1, "1", traffic, None, "run-a"),
        LoopRound(2, "1", traffic, judgement(0.05, (0.04, 0.03, 0.06)), "run-b"),
        LoopRound(3, "1", traffic, judgement(0.05, (0.2, 0.1, 0.3), version="3"), None),
    ]
    assert coverage(rounds) == {"ips": (2, 2), "snips": (1, 2), "dr": (0, 2)}
    frame = rounds_frame(rounds)
    assert list(frame["round"]) == [1, 2, 3] and np.isnan(frame["candidate/snips"].iloc[0])
    assert list(frame["candidate/snips_covered"].iloc[1:]) == [1.0, 0.0]
    text = loop_markdown(rounds, settings={"rounds": 3})
    assert "- SNIPS: 1 of 2" in text and "| 3 | v1 |" in text


def test_a_registration_without_an_evaluation_is_an_error_not_a_silent_round() -> None:
    """No `ope/*` metrics (the log could not be evaluated): the judgement says so instead of inventing one."""
    from explorec.pipeline.loop_traffic import LoopError

    with pytest.raises(LoopError, match="was not evaluated"):
        judgement_from(
            {}, version="2", run_id="r", truth=0.1, gate_passed=False, gate_reasons=[], promoted=False
        )
