"""The benchmark's per-split two-tower overrides: applied to their split only, shown, and validated."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from explorec.config import compose
from explorec.errors import ConfigError
from explorec.evaluation.targets import PerUserValues
from explorec.pipeline.benchmark import ModelResult, aligned_values, paired_comparisons, two_tower_config


def test_split_overrides_apply_to_their_split_only() -> None:
    overrides = "benchmark.two_tower_overrides={random_ratio:['model.learning_rate=0.0005']}"
    random_cfg, applied = two_tower_config(compose(["split=random_ratio", overrides]), "none")
    assert applied == ["model.learning_rate=0.0005"]
    assert random_cfg.model.learning_rate == pytest.approx(0.0005)
    assert random_cfg.encoder.name == "none"
    chronological, none_applied = two_tower_config(compose(["split=leave_last_out", overrides]), "minilm")
    assert none_applied == []
    assert chronological.model.learning_rate == pytest.approx(compose([]).model.learning_rate)


@pytest.mark.parametrize(
    ("override", "named"),
    [("model.loss=hinge", "model.loss"), ("model.embedding_dim=many", "embedding_dim")],
)
def test_a_bad_override_fails_with_the_key_named(override: str, named: str) -> None:
    overrides = f"benchmark.two_tower_overrides={{random_ratio:['{override}']}}"
    with pytest.raises(ConfigError, match=named):
        two_tower_config(compose(["split=random_ratio", overrides]), "none")


def _scored(name: str, users: list[int], values: list[float]) -> ModelResult:
    """Return a model result whose only content is its per-user test values."""
    per_user = {"test": PerUserValues(users=np.array(users), values=np.array(values))}
    return ModelResult(name, {}, {}, 0.0, per_user=per_user)


def test_paired_differences_use_only_shared_finite_users_and_a_worked_t_interval() -> None:
    tower = _scored("two_tower[minilm]", [0, 1, 2, 4], [0.5, 0.2, 0.9, np.nan])
    ease = _scored("ease", [1, 2, 3, 4], [0.1, 0.4, 0.7, 0.3])
    (row,) = paired_comparisons([ease, tower], baselines=["ease"])["rows"]
    # shared users 1, 2 (user 4 is NaN for the tower): differences 0.1 and 0.5, mean 0.3, sd 0.2828, se 0.2
    assert (row["model"], row["versus"], row["n_users"]) == ("two_tower[minilm]", "ease", 2)
    assert row["mean_difference"] == pytest.approx(0.3)
    half_width = stats.t.ppf(0.975, df=1) * 0.2  # 12.706 × 0.2
    assert row["ci_low"] == pytest.approx(0.3 - half_width)
    assert row["ci_high"] == pytest.approx(0.3 + half_width)
    assert row["p_value"] == pytest.approx(2 * stats.t.sf(1.5, df=1))
    assert row["p_holm"] == pytest.approx(row["p_value"])  # one comparison: Holm changes nothing


def test_models_are_paired_with_each_baseline_then_with_each_other_under_one_holm_family() -> None:
    rng = np.random.default_rng(0)
    users = list(range(50))
    base = rng.uniform(size=50)
    results = [
        _scored("ease", users, list(base)),
        _scored("two_tower[none]", users, list(base + 0.02 + rng.normal(0.0, 0.05, 50))),
        _scored("two_tower[minilm]", users, list(base + 0.05 + rng.normal(0.0, 0.05, 50))),
    ]
    rows = paired_comparisons(results, baselines=["ease"])["rows"]
    assert [(row["model"], row["versus"]) for row in rows] == [
        ("two_tower[none]", "ease"),
        ("two_tower[minilm]", "ease"),
        ("two_tower[none]", "two_tower[minilm]"),
    ]
    by_p = sorted(rows, key=lambda row: row["p_value"])
    # Holm with m = 3: 3·p(1), then max with 2·p(2), then max with p(3), each capped at 1
    expected = [min(3 * by_p[0]["p_value"], 1.0)]
    expected.append(min(max(expected[0], 2 * by_p[1]["p_value"]), 1.0))
    expected.append(min(max(expected[1], by_p[2]["p_value"]), 1.0))
    assert [row["p_holm"] for row in by_p] == pytest.approx(expected)


def test_models_with_no_user_in_common_cannot_be_paired() -> None:
    first = PerUserValues(users=np.array([0, 1]), values=np.array([0.1, 0.2]))
    second = PerUserValues(users=np.array([2, 3]), values=np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="no evaluated user"):
        aligned_values(first, second)
