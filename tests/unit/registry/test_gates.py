"""decide(): every rule over a table of cases, and the Markdown / JSON forms of a decision."""

from __future__ import annotations

import json
import math

import pytest

from explorec.config.registry import GatesConfig, MetricGate
from explorec.registry.gates import decide

GATES = GatesConfig(
    ndcg_at_10=MetricGate("ndcg", threshold=0.10, tolerance=0.01),
    recall_at_20=MetricGate("recall", threshold=0.20, tolerance=0.02),
    intra_list_diversity=MetricGate("ild", threshold=0.50, tolerance=0.05),
    catalog_coverage=MetricGate("coverage", threshold=0.30, tolerance=0.05),
    exposure_gini=MetricGate("gini", threshold=0.80, tolerance=0.03, higher_is_better=False),
    simulator_lift_metric="sim_low",
)
GOOD = {"ndcg": 0.15, "recall": 0.30, "ild": 0.70, "coverage": 0.40, "gini": 0.60}
CHAMPION = {"ndcg": 0.15, "recall": 0.30, "ild": 0.70, "coverage": 0.40, "gini": 0.60}


def with_values(**changes: float) -> dict[str, float]:
    """Return GOOD with some metrics changed."""
    return {**GOOD, **changes}


def without(key: str) -> dict[str, float]:
    """Return GOOD without one metric."""
    return {name: value for name, value in GOOD.items() if name != key}


CASES = [
    # id, candidate, champion, passed, words expected in the single failure reason
    ("pass, no champion", GOOD, None, True, None),
    ("pass vs champion within tolerances", with_values(ndcg=0.141, gini=0.629), CHAMPION, True, None),
    ("ndcg below floor", with_values(ndcg=0.05), None, False, "ndcg_at_10: 0.05 is below the floor 0.1"),
    ("recall below floor", with_values(recall=0.19), None, False, "recall_at_20: 0.19 is below"),
    ("ild below floor", with_values(ild=0.4), None, False, "intra_list_diversity: 0.4 is below"),
    ("coverage below floor", with_values(coverage=0.2), None, False, "catalog_coverage: 0.2 is below"),
    ("gini above ceiling", with_values(gini=0.9), None, False, "exposure_gini: 0.9 is above the ceiling"),
    ("ndcg worse than champion", with_values(ndcg=0.13), CHAMPION, False, "worse than the champion's 0.15"),
    ("ild worse than champion", with_values(ild=0.6), CHAMPION, False, "intra_list_diversity: 0.6 is worse"),
    ("coverage worse than champion", with_values(coverage=0.33), CHAMPION, False, "catalog_coverage: 0.33"),
    ("gini worse than champion", with_values(gini=0.64), CHAMPION, False, "exposure_gini: 0.64 is worse"),
    ("NaN metric", with_values(recall=math.nan), None, False, "'recall' is NaN"),
    ("missing metric", without("ild"), None, False, "'ild' is missing"),
    ("champion lacks a metric", GOOD, without("coverage"), False, "champion has no usable 'coverage'"),
    ("simulator lift above zero", with_values(sim_low=0.01), None, True, None),
    ("simulator lift interval touches zero", with_values(sim_low=0.0), None, False, "is not above 0"),
    ("simulator lift NaN", with_values(sim_low=math.nan), None, False, "'sim_low' is NaN"),
]


@pytest.mark.parametrize(
    ("candidate", "champion", "passed", "reason"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decide_table(
    candidate: dict[str, float], champion: dict[str, float] | None, passed: bool, reason: str | None
) -> None:
    """Each case passes or fails with exactly one reason that names the rule and the values."""
    decision = decide(candidate, champion, GATES)
    assert decision.passed is passed
    if reason is None:
        assert decision.reasons == []
    else:
        assert len(decision.reasons) == 1, decision.reasons
        assert reason in decision.reasons[0]


def test_missing_metric_fails_both_rules_with_a_champion() -> None:
    """A missing metric fails the absolute rule and the champion rule, each saying it is missing."""
    decision = decide(without("ndcg"), CHAMPION, GATES)
    assert not decision.passed
    assert len(decision.reasons) == 2
    assert all("'ndcg' is missing" in reason for reason in decision.reasons)


def test_required_simulator_result_missing_fails() -> None:
    """require_simulator_lift turns an absent simulator result into a failure."""
    gates = GatesConfig(**{**GATES.__dict__, "require_simulator_lift": True})
    decision = decide(GOOD, None, gates)
    assert decision.reasons == ["simulator_lift: 'sim_low' is missing but a simulator result is required"]


def test_table_has_one_row_per_rule() -> None:
    """Five absolute rows without a champion; ten with one; eleven with a simulator result."""
    assert len(decide(GOOD, None, GATES).table) == 5
    assert len(decide(GOOD, CHAMPION, GATES).table) == 10
    assert len(decide(with_values(sim_low=0.2), CHAMPION, GATES).table) == 11


def test_champion_bound_uses_tolerance_direction() -> None:
    """Higher-is-better bounds are champion − tolerance; Gini's is champion + tolerance."""
    rows = {row.rule: row for row in decide(GOOD, CHAMPION, GATES).table}
    assert rows["ndcg_at_10 (vs champion)"].bound == pytest.approx(0.14)
    assert rows["exposure_gini (vs champion)"].bound == pytest.approx(0.63)


def reject_constant(name: str) -> float:
    """Fail on NaN / Infinity, which standard JSON does not allow."""
    raise AssertionError(f"non-standard JSON constant {name}")


def test_markdown_and_json() -> None:
    """The Markdown table shows status and failures; the JSON is standard (NaN as null) and round-trips."""
    decision = decide(with_values(recall=math.nan, coverage=0.1), CHAMPION, GATES)
    markdown = decision.to_markdown()
    assert markdown.startswith("**Gate: FAILED**")
    assert "| catalog_coverage (absolute) | `coverage` | 0.1 | — | 0.3 | >= 0.3 | FAIL:" in markdown
    assert markdown.count("FAIL:") == len(decision.reasons) == 4
    payload = json.loads(decision.to_json(), parse_constant=reject_constant)
    assert payload["status"] == "failed"
    assert payload["reasons"] == decision.reasons
    recall_row = next(row for row in payload["table"] if row["rule"] == "recall_at_20 (absolute)")
    assert recall_row["candidate"] is None


@pytest.mark.parametrize(
    ("low", "samples", "passed", "words"),
    [
        (0.002, 1000.0, True, None),
        (-0.004, 1000.0, True, None),
        (-0.006, 1000.0, False, "lower bound of the lift on logged traffic -0.006 is not above -0.005"),
        (0.010, 150.0, False, "150 effective samples, fewer than 200"),
        (math.nan, 1000.0, False, "is NaN"),
    ],
)
def test_ope_lift_gate_reads_the_logged_traffic_evaluation(
    low: float, samples: float, passed: bool, words: str | None
) -> None:
    """With an off-policy evaluation attached, its lift's lower bound and effective samples are gated."""
    gates = GatesConfig(**{**GATES.__dict__, "ope_lift_tolerance": 0.005})
    candidate = with_values(**{"ope/lift_ci_low": low, "ope/effective_sample_size": samples})
    decision = decide(candidate, None, gates)
    assert decision.passed is passed
    assert [row.rule for row in decision.table][-1] == "ope_lift"
    if words:
        assert len(decision.reasons) == 1 and words in decision.reasons[0]
    assert "ope_lift" not in [row.rule for row in decide(GOOD, None, gates).table]
