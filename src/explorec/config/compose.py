"""Compose the Hydra groups in `conf/` with overrides into a validated ExplorecConfig; paths and hashes."""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from explorec.config.schema import ExplorecConfig
from explorec.config.simulation import GROUND_TRUTHS, WORLDS
from explorec.config.tuning import validate_tune_config
from explorec.errors import ConfigError


def conf_dir() -> Path:
    """Return the folder holding the Hydra config groups (EXPLOREC_CONF_DIR, the checkout, or the wheel)."""
    if env := os.environ.get("EXPLOREC_CONF_DIR"):
        return Path(env).resolve()
    checkout = Path(__file__).resolve().parents[3] / "conf"
    if (checkout / "config.yaml").is_file():
        return checkout
    packaged = Path(__file__).resolve().parents[1] / "conf"
    if (packaged / "config.yaml").is_file():
        return packaged
    raise ConfigError("cannot find the conf/ folder; set EXPLOREC_CONF_DIR to the folder holding config.yaml")


def project_root() -> Path:
    """Return the folder that relative output paths are resolved against (EXPLOREC_HOME or the cwd)."""
    return Path(os.environ.get("EXPLOREC_HOME", os.getcwd())).resolve()


def resolve(path: str) -> Path:
    """Return a config path as an absolute path (relative paths resolve under the project root)."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else project_root() / candidate


def _register_schema() -> None:
    """Register the schema with Hydra's ConfigStore so every group file is checked against it."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name="explorec_schema", node=ExplorecConfig)


FIXED_OPTIONS: dict[str, tuple[str, ...]] = {
    "model.training_objective": ("auto", "next_item", "held_out"),
    "model.loss": ("auto", "sampled_softmax", "full_softmax"),
    "model.user_pooling": ("auto", "attention", "mean"),
    "replay.evaluation": ("valid", "test"),
    "registry.unaudited_champion": ("restore", "record"),
    "simulate.ground_truth": GROUND_TRUTHS,
    "runner.name": ("local", "dask"),
}
"""Settings whose value is one of a fixed set of options (not a registry of components)."""


AT_LEAST_ONE = (
    "data.synthetic.n_users",
    "data.synthetic.n_items",
    "data.synthetic.n_interactions",
    "data.synthetic.n_clusters",
    "encoder.batch_size",
    "encoder.num_threads",
    "model.embedding_dim",
    "model.history_length",
    "model.attention_heads",
    "model.attention_layers",
    "model.sparse_embeddings_from",
    "trainer.max_epochs",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.batch_size",
    "trainer.num_threads",
    "trainer.check_val_every_n_epoch",
    "trainer.eval_batch_size",
    "policy.slate_size",
    "policy.n_candidates",
    "policy.n_clusters",
    "benchmark.als_iterations",
    "benchmark.item_item_max_items",
    "tune.n_trials",
    "tune.n_workers",
    "tune.slate_size",
    "simulate.n_visits",
    "simulate.slate_size",
    "simulate.n_candidates",
    "simulate.n_text_clusters",
    "simulate.stand_in_dimension",
    "simulate.blas_threads",
    "simulate.tune_users",
    "simulate.test_users",
    "simulate.ials_factors",
    "simulate.ials_iterations",
    "registry.max_k",
    "registry.index.hnsw_m",
    "registry.index.ef_construction",
    "registry.index.ef_search",
    "registry.index.n_candidates",
    "registry.index.recall_users",
    "service.port",
    "service.max_body_bytes",
    "service.max_feedback_items",
    "service.torch_threads",
    "runner.n_workers",
)
"""Counts and sizes: a dimension, batch, epoch count, slate or pool of zero or fewer means nothing."""
AT_LEAST_ZERO = (
    "data.timestamp_slack_s",
    "gates.ope_lift_tolerance",
    "gates.ope_min_effective_samples",
    "model.mlp_layers",
    "model.extra_uniform_negatives",
    "model.weight_decay",
    "trainer.num_workers",
    "registry.index.exact_below",
    "registry.index.retrieve_from",
    "trainer.early_stopping_patience",
    "tune.max_retry",
    "tune.pruner.n_startup_trials",
    "tune.pruner.n_warmup_steps",
)
"""Counts, penalties and slack that may be zero (no layer, no extra negative, no patience, no retry)."""
ABOVE_ZERO = (
    "model.learning_rate",
    "model.initial_temperature",
    "registry.lock_timeout_s",
    "service.poll_seconds",
)
"""Step sizes, temperatures and timeouts."""
FRACTIONS = (
    "model.dropout",
    "model.id_dropout",
    "model.ema_decay",
    "split.cold_item_ratio",
    "service.exploration_floor",
)
"""Shares in [0, 1)."""


def _value(cfg: ExplorecConfig, key: str) -> Any:
    """Return the config value at a dotted key (`simulate.calibrations[0].top10_mean_p` included)."""
    node: Any = cfg
    for part in key.replace("]", "").replace("[", ".").split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


def _non_finite(node: Any, prefix: str = "") -> Iterator[str]:
    """Yield the dotted key of every NaN or infinite number in a config section, lists included."""
    if is_dataclass(node):
        for item in fields(node):
            yield from _non_finite(getattr(node, item.name), f"{prefix}{item.name}.")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _non_finite(item, f"{prefix.rstrip('.')}[{index}].")
    elif isinstance(node, float) and not math.isfinite(node):
        yield prefix.rstrip(".")


def validate_bounds(cfg: ExplorecConfig) -> None:
    """Fail on a NaN or infinite number anywhere, and on counts, sizes, rates and shares out of range."""
    for key in _non_finite(cfg):
        raise ConfigError(f"{key}={_value(cfg, key)} must be a finite number")
    checks = (
        (AT_LEAST_ONE, lambda value: value >= 1, "must be >= 1"),
        (AT_LEAST_ZERO, lambda value: value >= 0, "must be >= 0"),
        (ABOVE_ZERO, lambda value: value > 0, "must be > 0"),
        (FRACTIONS, lambda value: 0 <= value < 1, "must lie in [0, 1)"),
    )
    for keys, holds, rule in checks:
        for key in keys:
            if not holds(_value(cfg, key)):
                raise ConfigError(f"{key}={_value(cfg, key)} {rule}")


def validate_values(cfg: ExplorecConfig) -> None:
    """Fail on values outside their ranges or fixed options (`explorec.pipeline.config` checks names)."""
    for key, options in FIXED_OPTIONS.items():
        section, field_name = key.split(".")
        if getattr(getattr(cfg, section), field_name) not in options:
            raise ConfigError(f"{key} must be {', '.join(options[:-1])} or {options[-1]}")
    validate_bounds(cfg)
    _validate_ratios(cfg)
    _validate_replay_values(cfg)
    if cfg.data.k_core < 0:
        raise ConfigError("data.k_core must be >= 0")
    if cfg.evaluation.max_users is not None and cfg.evaluation.max_users < 1:
        raise ConfigError(f"evaluation.max_users={cfg.evaluation.max_users} must be >= 1 (null: every user)")
    for key in ("service.exploration_floor_pool", "loop.floor_pool"):
        if _value(cfg, key) is not None and _value(cfg, key) < 1:
            raise ConfigError(f"{key}={_value(cfg, key)} must be >= 1 (null: any item)")
    _validate_simulation_values(cfg)
    validate_tune_config(cfg.tune)
    processes = cfg.trainer.devices * cfg.trainer.num_nodes
    if processes > 1 and cfg.trainer.strategy not in ("auto", "ddp"):
        raise ConfigError(
            f"trainer.strategy={cfg.trainer.strategy} with {processes} training processes: use ddp (explorec "
            "starts the ranks itself, so that only rank 0 runs the flow and the MLflow run)"
        )


def _validate_ratios(cfg: ExplorecConfig) -> None:
    """Fail on split, held-out and exploration ratios outside their ranges."""
    if not 0.0 <= cfg.split.valid_ratio < 1.0 or not 0.0 < cfg.split.test_ratio < 1.0:
        raise ConfigError("split.valid_ratio and split.test_ratio must lie in [0, 1)")
    if cfg.split.valid_ratio + cfg.split.test_ratio >= 1.0:
        raise ConfigError("split.valid_ratio + split.test_ratio must be below 1")
    if not 0.0 < cfg.model.held_out_fraction < 1.0:
        raise ConfigError("model.held_out_fraction must lie in (0, 1)")
    if not 0.0 <= cfg.policy.exploration_rate <= 1.0:
        raise ConfigError("policy.exploration_rate must lie in [0, 1]")
    if cfg.policy.feedback_weight <= 0:
        raise ConfigError("policy.feedback_weight must be > 0")


def _validate_replay_values(cfg: ExplorecConfig) -> None:
    """Fail on replay visits, slate sizes, rates and weights outside their ranges."""
    if cfg.replay.visits < 1 or cfg.replay.k < 1:
        raise ConfigError("replay.visits and replay.k must be >= 1")
    if any(not 0.0 <= rate <= 1.0 for rate in cfg.replay.rates):
        raise ConfigError("replay.rates must lie in [0, 1]")
    if any(weight <= 0 for weight in cfg.replay.feedback_weights):
        raise ConfigError("replay.feedback_weights must be > 0")


def _validate_world(cfg: ExplorecConfig) -> None:
    """Fail on an unknown simulated world or churn shares outside their ranges."""
    if cfg.simulate.world not in WORLDS:
        raise ConfigError(f"simulate.world must be one of {', '.join(WORLDS)}, got {cfg.simulate.world!r}")
    if not 0.0 < cfg.simulate.churn_share < 1.0:
        raise ConfigError(f"simulate.churn_share must lie in (0, 1), got {cfg.simulate.churn_share}")
    if not 0.0 <= cfg.simulate.churn_initial_share <= 1.0:
        raise ConfigError(
            f"simulate.churn_initial_share must lie in [0, 1], got {cfg.simulate.churn_initial_share}"
        )


def _validate_simulation_values(cfg: ExplorecConfig) -> None:
    """Fail on simulate/study values outside their ranges or fixed options."""
    if cfg.simulate.recommender_max_epochs < 1:
        raise ConfigError("simulate.recommender_max_epochs must be >= 1")
    if cfg.simulate.episode_workers < 1:
        raise ConfigError("simulate.episode_workers must be >= 1")
    if cfg.simulate.n_replications < 2:
        raise ConfigError("simulate.n_replications must be >= 2 (paired intervals need two replications)")
    if cfg.simulate.pool not in ("tune", "test"):
        raise ConfigError(f"simulate.pool must be tune or test, got {cfg.simulate.pool!r}")
    _validate_world(cfg)
    _validate_study(cfg)


def _validate_study(cfg: ExplorecConfig) -> None:
    """Fail on study values outside their ranges or fixed options."""
    study = cfg.study
    if len(study.encoders) < 2 or len(set(study.encoders)) != len(study.encoders):
        raise ConfigError(f"study.encoders must name at least two different encoders, got {study.encoders}")
    for key, values, options in (
        ("study.worlds", study.worlds, WORLDS),
        ("study.ground_truths", study.ground_truths, GROUND_TRUTHS),
    ):
        if not values or len(set(values)) != len(values) or not set(values) <= set(options):
            raise ConfigError(f"{key} must list different options among {', '.join(options)}, got {values}")
    if not study.exploration_rates or not all(0.0 < rate <= 1.0 for rate in study.exploration_rates):
        raise ConfigError("study.exploration_rates must be a non-empty list of rates in (0, 1]")
    known = {target.name for target in cfg.simulate.calibrations}
    if missing := sorted(set(study.calibrations) - known):
        raise ConfigError(f"study.calibrations {missing} are not among simulate.calibrations {sorted(known)}")
    if study.pool not in ("tune", "test"):
        raise ConfigError(f"study.pool must be tune or test, got {study.pool!r}")
    if study.n_replications < 2:
        raise ConfigError("study.n_replications must be >= 2 (paired intervals need two replications)")
    if study.selection_pool not in ("", "tune", "test") or study.selection_pool == study.pool:
        raise ConfigError(
            f"study.selection_pool must be '' or the pool study.pool ({study.pool}) is not, "
            f"got {study.selection_pool!r}"
        )


def compose(overrides: list[str] | tuple[str, ...] = ()) -> ExplorecConfig:
    """Compose `conf/config.yaml` with Hydra overrides into an ExplorecConfig whose values lie in range.

    Names of registered things (data sources, splits, policies, recommenders) are checked by
    `explorec.pipeline.config.load_config`, which every entry point uses.
    """
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
    validate_values(cfg)
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
