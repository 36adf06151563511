"""The typed configuration: the schema (`schema`, with the simulator, search and registry sections beside it)
and `compose`, which reads `conf/` with Hydra overrides into a type- and range-checked `ExplorecConfig`
(`explorec.pipeline.config.load_config` also checks the names it chooses against the registries)."""

from explorec.config.compose import (
    compose,
    conf_dir,
    config_hash,
    from_dict,
    project_root,
    resolve,
    to_dict,
)
from explorec.config.schema import (
    BenchmarkConfig,
    DataConfig,
    EncoderConfig,
    EvaluationConfig,
    ExplorecConfig,
    FileColumnsConfig,
    ModelConfig,
    PathsConfig,
    PipelineConfig,
    PolicyConfig,
    ReplayConfig,
    RunnerConfig,
    SplitConfig,
    SyntheticConfig,
    TrackingConfig,
    TrainerConfig,
)

__all__ = [
    "BenchmarkConfig",
    "DataConfig",
    "EncoderConfig",
    "EvaluationConfig",
    "ExplorecConfig",
    "FileColumnsConfig",
    "ModelConfig",
    "PathsConfig",
    "PipelineConfig",
    "PolicyConfig",
    "ReplayConfig",
    "RunnerConfig",
    "SplitConfig",
    "SyntheticConfig",
    "TrackingConfig",
    "TrainerConfig",
    "compose",
    "conf_dir",
    "config_hash",
    "from_dict",
    "project_root",
    "resolve",
    "to_dict",
]
