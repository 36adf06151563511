"""The benchmark's per-split two-tower overrides: applied to their split only, shown, and validated."""

from __future__ import annotations

import pytest

from explorec.benchmark import two_tower_config
from explorec.config import compose
from explorec.errors import ConfigError


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
