"""Whether a registered version may be served: it passed its gates, or its (forced) promotion is on record."""

from __future__ import annotations

from collections.abc import Mapping

GATE_STATUS_TAG = "gate.status"
PROMOTION_GATE_TAG = "promotion.gate_status"
FORCED_TAG = "promotion.forced"
FORCE_REASON_TAG = "promotion.reason"
ATTEMPT_OUTCOME_TAG = "promotion.attempt.outcome"
ATTEMPT_REASON_TAG = "promotion.attempt.reason"


def refusal_reason(tags: Mapping[str, str]) -> str | None:
    """None when a version with these tags may serve, else the one-line reason it may not."""
    if tags.get(GATE_STATUS_TAG) == "passed" or tags.get(PROMOTION_GATE_TAG) == "passed":
        return None
    if tags.get(FORCED_TAG) == "true" and tags.get(FORCE_REASON_TAG, "").strip():
        return None
    # an attempt recorded before the alias moved, whose closing tags a crash cut off (settled by the next
    # `explorec promote`): audited already
    outcome, reason = tags.get(ATTEMPT_OUTCOME_TAG), tags.get(ATTEMPT_REASON_TAG, "none").strip()
    if outcome == "promoted" or (outcome == "forced" and reason not in ("", "none")):
        return None
    status = tags.get(GATE_STATUS_TAG, "missing")
    return (
        f"its gate status is {status!r} and no forced promotion is recorded; "
        "promote a gated version with `explorec promote` (or force one with --force --reason)"
    )
