"""The simulator's and the study's defaults are SimulateConfig's and StudyConfig's; bad values fail."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from explorec.config.simulation import SimulateConfig

DEFAULT_YAML = Path(__file__).resolve().parents[3] / "conf" / "simulate" / "default.yaml"


def test_default_yaml_holds_no_values_and_compose_gives_the_dataclass_defaults() -> None:
    from explorec.config import compose

    assert OmegaConf.to_container(OmegaConf.load(DEFAULT_YAML)) == {}
    assert compose([]).simulate == SimulateConfig()


def test_study_defaults_are_the_dataclass_defaults_and_bad_values_fail() -> None:
    from explorec.config import compose
    from explorec.config.simulation import StudyConfig
    from explorec.errors import ConfigError
    from explorec.pipeline.config import load_config

    study_yaml = DEFAULT_YAML.parents[1] / "study" / "default.yaml"
    assert OmegaConf.to_container(OmegaConf.load(study_yaml)) == {}
    assert compose([]).study == StudyConfig()
    for override, key in (
        ("study.encoders=[minilm]", "study.encoders"),
        ("study.encoders=[none,minilm,none]", "study.encoders"),
        ("study.worlds=[static,moving]", "study.worlds"),
        ("study.worlds=[]", "study.worlds"),
        ("study.ground_truths=[ease,ease]", "study.ground_truths"),
        ("study.selection_pool=test", "study.selection_pool"),
        ("study.policies=[greedy]", "study.policies"),
        ("study.calibrations=[absent]", "study.calibrations"),
        ("simulate.recommender=svd", "simulate.recommender"),
        ("simulate.n_replications=1", "simulate.n_replications"),
        ("simulate.pool=all", "simulate.pool"),
        ("+study.colour=red", "study.colour"),
    ):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config([override])
