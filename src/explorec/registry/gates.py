"""The promotion gate: a pure decision over a candidate's metrics, its champion's metrics and the thresholds.

Rules, per gated metric (see `GatesConfig`): the value must exist and not be NaN; it must clear the absolute
threshold; with a champion, it must be no worse than the champion's by more than the tolerance (a champion
without the metric cannot be compared, which fails the rule too). When the candidate carries a simulator
result (the lower bound of its lift interval), that bound must be > 0; `require_simulator_lift` makes the
result mandatory. When it carries an off-policy evaluation on logged traffic (`explorec evaluate-logs`), the
lower bound of its lift over that traffic must be above −`ope_lift_tolerance`, on at least
`ope_min_effective_samples` effective samples.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from explorec.config.registry import GatesConfig, MetricGate


@dataclass(frozen=True)
class GateRow:
    """One checked rule: which metric, the values compared, the bound, and whether it passed."""

    rule: str
    metric: str
    candidate: float | None
    reference: float | None
    bound: float | None
    comparison: str
    passed: bool
    reason: str = ""


@dataclass(frozen=True)
class Decision:
    """The gate's verdict: passed only when every row passed; reasons name each failed rule."""

    passed: bool
    reasons: list[str] = field(default_factory=list)
    table: list[GateRow] = field(default_factory=list)

    @property
    def status(self) -> str:
        """Return 'passed' or 'failed'."""
        return "passed" if self.passed else "failed"

    def to_dict(self) -> dict[str, Any]:
        """Return the decision as a JSON-serialisable dict (NaN written as null)."""
        rows = [{key: _json_number(value) for key, value in asdict(row).items()} for row in self.table]
        return {"status": self.status, "passed": self.passed, "reasons": list(self.reasons), "table": rows}

    def to_json(self) -> str:
        """Return the decision as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)

    def to_markdown(self) -> str:
        """Return the decision as a Markdown table with a status line and the failure reasons."""
        lines = [
            f"**Gate: {self.status.upper()}**",
            "",
            "| rule | metric | candidate | champion | bound | check | result |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in self.table:
            result = "pass" if row.passed else f"FAIL: {row.reason}"
            lines.append(
                f"| {row.rule} | `{row.metric}` | {_cell(row.candidate)} | {_cell(row.reference)} "
                f"| {_cell(row.bound)} | {row.comparison} | {result} |"
            )
        if self.reasons:
            lines += ["", "Reasons:", *[f"- {reason}" for reason in self.reasons]]
        return "\n".join(lines) + "\n"


def _json_number(value: Any) -> Any:
    """Return NaN/inf floats as None so the JSON is standard; other values unchanged."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _cell(value: float | None) -> str:
    """Format a number for the Markdown table ('—' when absent)."""
    return "—" if value is None else f"{value:.4g}"


def _read(metrics: Mapping[str, float] | None, key: str) -> float | None:
    """Return metrics[key] as float, None when missing; NaN stays NaN."""
    if metrics is None or key not in metrics or metrics[key] is None:
        return None
    return float(metrics[key])


def _is_missing(value: float | None) -> bool:
    """Whether a metric value is absent or NaN."""
    return value is None or math.isnan(value)


def _absence(value: float | None) -> str:
    """Say how a metric is unusable: 'missing' or 'NaN'."""
    return "missing" if value is None else "NaN"


def _threshold_row(rule: str, gate: MetricGate, value: float | None) -> GateRow:
    """Check the absolute bound of one metric."""
    comparison = f"{'>=' if gate.higher_is_better else '<='} {gate.threshold:g}"
    name = f"{rule} (absolute)"
    if _is_missing(value):
        reason = f"{rule}: candidate metric '{gate.metric}' is {_absence(value)}"
        return GateRow(name, gate.metric, value, None, gate.threshold, comparison, False, reason)
    assert value is not None
    passed = value >= gate.threshold if gate.higher_is_better else value <= gate.threshold
    direction = "below the floor" if gate.higher_is_better else "above the ceiling"
    reason = "" if passed else f"{rule}: {value:.4g} is {direction} {gate.threshold:g}"
    return GateRow(name, gate.metric, value, None, gate.threshold, comparison, passed, reason)


def _champion_row(rule: str, gate: MetricGate, value: float | None, champion: float | None) -> GateRow:
    """Check that one metric is no worse than the champion's by more than the tolerance."""
    sign = -1.0 if gate.higher_is_better else 1.0
    relation = ">= champion -" if gate.higher_is_better else "<= champion +"
    comparison = f"{relation} {gate.tolerance:g}"
    name = f"{rule} (vs champion)"
    if _is_missing(champion):
        reason = f"{rule}: the champion has no usable '{gate.metric}' to compare with"
        return GateRow(name, gate.metric, value, champion, None, comparison, False, reason)
    assert champion is not None
    bound = champion + sign * gate.tolerance
    if _is_missing(value):
        reason = f"{rule}: candidate metric '{gate.metric}' is {_absence(value)}"
        return GateRow(name, gate.metric, value, champion, bound, comparison, False, reason)
    assert value is not None
    passed = value >= bound if gate.higher_is_better else value <= bound
    reason = (
        ""
        if passed
        else (
            f"{rule}: {value:.4g} is worse than the champion's {champion:.4g} by more than {gate.tolerance:g}"
        )
    )
    return GateRow(name, gate.metric, value, champion, bound, comparison, passed, reason)


def _simulator_row(candidate: Mapping[str, float], gates: GatesConfig) -> GateRow | None:
    """Check the simulator lift interval's lower bound when attached (or required); None when not gated."""
    key = gates.simulator_lift_metric
    value = _read(candidate, key)
    if value is None and not gates.require_simulator_lift:
        return None
    rule = "simulator_lift"
    if _is_missing(value):
        reason = f"{rule}: '{key}' is missing but a simulator result is required"
        if value is not None:
            reason = f"{rule}: '{key}' is NaN"
        return GateRow(rule, key, value, None, 0.0, "> 0", False, reason)
    assert value is not None
    passed = value > 0.0
    reason = "" if passed else f"{rule}: lower bound of the lift interval {value:.4g} is not above 0"
    return GateRow(rule, key, value, None, 0.0, "> 0", passed, reason)


def _ope_row(candidate: Mapping[str, float], gates: GatesConfig) -> GateRow | None:
    """Check the lift over logged traffic when the candidate has an off-policy evaluation; None otherwise."""
    key, rule = gates.ope_lift_metric, "ope_lift"
    value = _read(candidate, key)
    if value is None:
        return None
    samples = _read(candidate, "ope/effective_sample_size")
    bound = -gates.ope_lift_tolerance
    comparison = f"> {bound:g}, ESS >= {gates.ope_min_effective_samples:g}"
    if _is_missing(value) or _is_missing(samples):
        return GateRow(rule, key, value, None, bound, comparison, False, f"{rule}: '{key}' or its ESS is NaN")
    assert value is not None and samples is not None
    if samples < gates.ope_min_effective_samples:
        reason = f"{rule}: {samples:.0f} effective samples, fewer than {gates.ope_min_effective_samples:g}"
        return GateRow(rule, key, value, None, bound, comparison, False, reason)
    passed = value > bound
    reason = (
        ""
        if passed
        else f"{rule}: lower bound of the lift on logged traffic {value:.4g} is not above {bound:g}"
    )
    return GateRow(rule, key, value, None, bound, comparison, passed, reason)


def decide(
    candidate: Mapping[str, float], champion: Mapping[str, float] | None, gates: GatesConfig
) -> Decision:
    """Return whether `candidate` may be promoted over `champion` (None: no champion yet) under `gates`."""
    rows: list[GateRow] = []
    for rule, gate in gates.metric_gates().items():
        value = _read(candidate, gate.metric)
        rows.append(_threshold_row(rule, gate, value))
        if champion is not None:
            rows.append(_champion_row(rule, gate, value, _read(champion, gate.metric)))
    rows.extend(row for row in (_simulator_row(candidate, gates), _ope_row(candidate, gates)) if row)
    reasons = [row.reason for row in rows if not row.passed]
    return Decision(passed=not reasons, reasons=reasons, table=rows)
