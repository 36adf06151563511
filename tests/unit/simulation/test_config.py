"""conf/simulate/default.yaml matches SimulateConfig's fields and defaults."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from explorec.simulation.config import SimulateConfig

DEFAULT_YAML = Path(__file__).resolve().parents[3] / "conf" / "simulate" / "default.yaml"


def test_default_yaml_equals_the_dataclass_defaults() -> None:
    schema = OmegaConf.structured(SimulateConfig)
    OmegaConf.set_struct(schema, True)
    merged = OmegaConf.merge(schema, OmegaConf.load(DEFAULT_YAML))  # unknown keys would raise
    assert OmegaConf.to_object(merged) == SimulateConfig()
    assert set(OmegaConf.load(DEFAULT_YAML)) == set(OmegaConf.to_container(schema))
