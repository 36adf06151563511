"""The pipeline's words: why a candidate was not promoted, and which exploration rate is served."""

from __future__ import annotations

from typing import Any

from explorec.pipeline.report import not_promoted_reason, policy_line, serving_policy


def _summary(*, passed: bool, champion: str | None, promotion: dict[str, Any] | None = None) -> dict:
    """A pipeline summary holding only what the verdict reads."""
    registration = {
        "registered_model": "m",
        "version": "2",
        "gate_passed": passed,
        "gate_reasons": [] if passed else ["catalog_coverage: 0.1 is below the floor 0.2"],
    }
    return {"registration": registration, "promotion": promotion, "champion": champion}


def test_a_failed_gate_names_its_reasons_and_the_champion_that_stays() -> None:
    reason = not_promoted_reason(_summary(passed=False, champion="1"), promote=True)
    assert reason == (
        "gate failed, m v2 not promoted (champion: v1): catalog_coverage: 0.1 is below the floor 0.2"
    )


def test_a_refused_promotion_and_promotion_switched_off_are_not_promotions() -> None:
    refused = {"promoted": False, "outcome": "refused", "gate_reasons": ["ndcg_at_10: worse"]}
    assert not_promoted_reason(_summary(passed=True, champion="1", promotion=refused), promote=True) == (
        "promotion refused, m v2 not promoted (champion: v1): ndcg_at_10: worse"
    )
    off = not_promoted_reason(_summary(passed=True, champion="1"), promote=False)
    assert off is not None and "pipeline.promote=false" in off


def test_a_promoted_or_already_champion_candidate_has_no_reason() -> None:
    promoted = {"promoted": True, "outcome": "promoted", "gate_reasons": []}
    assert not_promoted_reason(_summary(passed=True, champion="2", promotion=promoted), promote=True) is None
    assert not_promoted_reason(_summary(passed=True, champion="2"), promote=True) is None


def test_the_served_policy_says_its_rate_where_it_came_from_and_how_much_it_explored() -> None:
    served = {"served/policy/explored_share": 0.25, "served/policy/deviation_rate": 0.4}
    policy = serving_policy("linucb", 0.5, served, {"chosen_trial": {"number": 7}})
    assert policy["rate_from"] == "chosen by search trial 7"
    assert policy_line(policy) == (
        "policy linucb at exploration rate 0.5, chosen by search trial 7; "
        "served to test users: explored slots 0.250, slots unlike greedy 0.400"
    )
    assert serving_policy("greedy", 0.0, {})["rate_from"] == "set in the config"
