"""conf/simulate/default.yaml matches SimulateConfig's fields and defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from explorec.config.simulation import SimulateConfig

DEFAULT_YAML = Path(__file__).resolve().parents[3] / "conf" / "simulate" / "default.yaml"


def test_default_yaml_equals_the_dataclass_defaults() -> None:
    schema = OmegaConf.structured(SimulateConfig)
    OmegaConf.set_struct(schema, True)
    merged = OmegaConf.merge(schema, OmegaConf.load(DEFAULT_YAML))  # unknown keys would raise
    assert OmegaConf.to_object(merged) == SimulateConfig()
    assert set(OmegaConf.load(DEFAULT_YAML)) == set(OmegaConf.to_container(schema))


def test_study_yaml_equals_the_dataclass_defaults_and_bad_values_fail() -> None:
    from explorec.config import compose
    from explorec.config.simulation import StudyConfig
    from explorec.errors import ConfigError
    from explorec.pipeline.config import load_config

    study_yaml = DEFAULT_YAML.parents[1] / "study" / "default.yaml"
    schema = OmegaConf.structured(StudyConfig)
    OmegaConf.set_struct(schema, True)
    assert OmegaConf.to_object(OmegaConf.merge(schema, OmegaConf.load(study_yaml))) == StudyConfig()
    assert compose([]).study == StudyConfig()
    for override, key in (
        ("study.encoders=[minilm]", "study.encoders"),
        ("study.policies=[greedy]", "study.policies"),
        ("study.calibrations=[absent]", "study.calibrations"),
        ("simulate.recommender=svd", "simulate.recommender"),
        ("simulate.n_replications=1", "simulate.n_replications"),
        ("simulate.pool=all", "simulate.pool"),
        ("+study.colour=red", "study.colour"),
    ):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config([override])
