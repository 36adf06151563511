"""Typed settings of the Optuna search: the search space as data, objectives, storage, workers, selection.

The search space maps a dotted config path (`model.embedding_dim`, `policy.exploration_rate`) to a
distribution spec. `policy.*` paths set the exploration policy the trial serves with (see `PolicySettings`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from explorec.errors import ConfigError

MODES = ("multi", "single")
SAMPLERS = ("tpe", "nsga2", "random")
DIVERSITY_OBJECTIVES = ("ild", "coverage")
PRUNERS = ("median", "hyperband", "successive_halving", "none")
PARAMETER_TYPES = ("float", "int", "categorical")


@dataclass
class ParameterSpec:
    """One search dimension: `float`/`int` over [low, high] (optionally log or stepped) or `categorical`."""

    type: str = "float"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None


@dataclass
class PrunerConfig:
    """The pruner of single-objective mode (intermediate values: val/ndcg@10 per epoch)."""

    name: str = "median"
    n_startup_trials: int = 3
    n_warmup_steps: int = 1
    min_resource: int = 1
    reduction_factor: int = 3


@dataclass
class PolicySettings:
    """The exploration policy a trial serves with (name from explorec.policies, one exploration_rate)."""

    name: str = "epsilon_greedy"
    exploration_rate: float = 0.1


SearchSpace = dict[str, dict[str, ParameterSpec]]
"""Config section → field → distribution: `{"model": {"embedding_dim": ...}}` is path `model.embedding_dim`.

Two levels (not dotted keys) so that Hydra overrides reach every spec, e.g.
`tune.search_space.model.embedding_dim.choices=[32,64]` or `~tune.search_space.policy.exploration_rate`.
"""


def _default_space() -> SearchSpace:
    """The issue's minimum space: embedding size and exploration rate."""
    return {
        "model": {"embedding_dim": ParameterSpec(type="categorical", choices=[16, 32, 64, 128, 256])},
        "policy": {"exploration_rate": ParameterSpec(type="float", low=0.0, high=0.5)},
    }


def flat_space(space: SearchSpace) -> dict[str, ParameterSpec]:
    """Return the search space as {dotted config path: spec}, in a stable (sorted) order."""
    return {
        f"{section}.{name}": spec
        for section, fields in sorted(space.items())
        for name, spec in sorted(fields.items())
    }


@dataclass
class TuneConfig:
    """One Optuna study: what is searched, what is optimised, where trials are stored, how they run.

    Fields:
    - study_name: the study's name in the storage; rerunning with the same name resumes it.
    - storage: `sqlite:///mlruns/optuna.db` (relative paths resolve under the project root), any SQLAlchemy
      URL (`postgresql://...`) for workers on several machines, or `journal:///path/file.log` /
      `journal:mlruns/optuna.log` for a journal file shared by several local processes.
    - n_trials: the budget, counted as COMPLETE + PRUNED trials of the study (a resumed study runs only the
      rest). n_workers: local worker processes on the shared storage (1 = in this process).
    - mode: `multi` maximises (served NDCG@10, diversity); `single` maximises served NDCG@10 and prunes.
    - sampler / seed: `tpe`, `nsga2` or `random`, seeded. pruner: single mode only.
    - diversity_objective: `ild` (intra-list diversity on the text encoder's item vectors) or `coverage`
      (catalogue coverage of all served slates). diversity_floor: the selection gate (see report.py);
      0.2 matches the ILD floor of the promotion gates (registry GatesConfig).
    - slate_size: K of the served slates (NDCG@K, ILD over K items). serving_seed: the policy's random stream.
    - heartbeat_interval_s / grace_period_s: RDB heartbeat; a RUNNING trial without a heartbeat for the
      grace period is failed and retried (max_retry times) on the next start.
    - search_space: config section → field → ParameterSpec (see `SearchSpace`).
    """

    study_name: str = "explorec-tune"
    storage: str = "sqlite:///mlruns/optuna.db"
    n_trials: int = 20
    n_workers: int = 1
    mode: str = "multi"
    sampler: str = "tpe"
    seed: int = 0
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    diversity_objective: str = "ild"
    diversity_floor: float = 0.2
    slate_size: int = 10
    serving_seed: int = 0
    heartbeat_interval_s: int = 10
    grace_period_s: int = 60
    max_retry: int = 2
    search_space: SearchSpace = field(default_factory=_default_space)


def validate_tune_config(tune: TuneConfig) -> None:
    """Fail with one clear message on names or ranges that would break the study."""
    choices = {
        "mode": (tune.mode, MODES),
        "sampler": (tune.sampler, SAMPLERS),
        "diversity_objective": (tune.diversity_objective, DIVERSITY_OBJECTIVES),
        "pruner.name": (tune.pruner.name, PRUNERS),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"tune.{key}={value!r} is not one of {', '.join(allowed)}")
    if tune.n_trials < 1 or tune.n_workers < 1:
        raise ConfigError("tune.n_trials and tune.n_workers must be at least 1")
    if tune.slate_size < 1:
        raise ConfigError("tune.slate_size must be at least 1")
    if not tune.search_space:
        raise ConfigError("tune.search_space is empty: name at least one config path to search")
    for path, spec in flat_space(tune.search_space).items():
        validate_parameter(path, spec)


def validate_parameter(path: str, spec: ParameterSpec) -> None:
    """Fail when a distribution spec is incomplete or inconsistent."""
    if spec.type not in PARAMETER_TYPES:
        raise ConfigError(f"tune.search_space.{path}.type={spec.type!r} is not one of {PARAMETER_TYPES}")
    if spec.type == "categorical":
        if not spec.choices:
            raise ConfigError(f"tune.search_space.{path}: a categorical needs a non-empty `choices` list")
        return
    if spec.low is None or spec.high is None or spec.low > spec.high:
        raise ConfigError(f"tune.search_space.{path}: a {spec.type} needs low <= high")
    if spec.log and spec.low <= 0:
        raise ConfigError(f"tune.search_space.{path}: a log scale needs low > 0")


def load_tune_config(name: str = "default", overrides: list[str] | tuple[str, ...] = ()) -> TuneConfig:
    """Compose `conf/tune/<name>.yaml` (its defaults list included) onto TuneConfig, then apply overrides.

    `overrides` are relative to `tune.` (e.g. `n_trials=4`, `+search_space.model.dropout={type:float,...}`).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from explorec.config import conf_dir

    folder = conf_dir() / "tune"
    if not (folder / f"{name}.yaml").is_file():
        raise ConfigError(f"tune={name!r}: no such file {folder / name}.yaml")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(folder), version_base=None):
            raw = hydra_compose(config_name=name)
        node = OmegaConf.merge(OmegaConf.structured(TuneConfig), raw)
        for override in _parse_overrides(overrides):
            if override.is_delete():
                _delete_key(node, override.key_or_group)
            else:
                node = _merge_at(node, override.key_or_group, override.value(), adding=override.is_add())
        tune = OmegaConf.to_object(node)
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(f"invalid tune configuration: {error}") from error
    finally:
        GlobalHydra.instance().clear()
    assert isinstance(tune, TuneConfig)
    validate_tune_config(tune)
    return tune


def _parse_overrides(overrides: list[str] | tuple[str, ...]) -> list[Any]:
    """Parse Hydra override strings (`a.b=1`, `+a.c={x:1}`, `~a.d`) with Hydra's own grammar."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(list(overrides))


def _merge_at(node: Any, dotted: str, value: Any, *, adding: bool) -> Any:
    """Merge `value` at the dotted path into `node` (schema-checked; `adding` allows new keys)."""
    from omegaconf import OmegaConf, open_dict

    for key in reversed(dotted.split(".")):
        value = {key: value}
    if not adding:
        return OmegaConf.merge(node, value)
    with open_dict(node):
        return OmegaConf.merge(node, value)


def _delete_key(node: Any, dotted: str) -> None:
    """Delete `a.b.c` from an OmegaConf node (a `~` override)."""
    from omegaconf import OmegaConf, open_dict

    parent_path, _, leaf = dotted.rpartition(".")
    parent = OmegaConf.select(node, parent_path) if parent_path else node
    if parent is None or leaf not in parent:
        raise ConfigError(f"cannot delete tune.{dotted}: no such key")
    with open_dict(parent):
        del parent[leaf]


def compose_search(overrides: list[str] | tuple[str, ...] = ()) -> tuple[Any, TuneConfig, PolicySettings]:
    """Compose the run config, the TuneConfig and the base policy from one list of Hydra overrides.

    Once the root schema has `tune` and `policy` sections this is `compose(overrides)`; until then the
    `tune=<name>`, `tune.*` and `policy.*` overrides are taken out and applied here.
    """
    from dataclasses import fields

    from explorec.config import ExplorecConfig, compose

    names = {item.name for item in fields(ExplorecConfig)}
    if {"tune", "policy"} <= names:
        cfg = compose(overrides)
        policy = cfg.policy  # type: ignore[attr-defined]
        return cfg, cfg.tune, PolicySettings(policy.name, policy.exploration_rate)  # type: ignore[attr-defined]
    run_overrides, tune_overrides, policy_overrides, group = [], [], [], "default"
    for text in overrides:
        bare = text.lstrip("+~")
        if bare.startswith("tune="):
            group = bare.removeprefix("tune=")
        elif bare.startswith("tune."):
            tune_overrides.append(text[: len(text) - len(bare)] + bare.removeprefix("tune."))
        elif bare.startswith("policy."):
            policy_overrides.append(bare.removeprefix("policy."))
        else:
            run_overrides.append(text)
    return compose(run_overrides), load_tune_config(group, tune_overrides), _policy_from(policy_overrides)


def _policy_from(overrides: list[str]) -> PolicySettings:
    """Build PolicySettings from `name=...` / `exploration_rate=...` overrides."""
    from omegaconf import OmegaConf

    node = OmegaConf.merge(OmegaConf.structured(PolicySettings), OmegaConf.from_dotlist(overrides))
    policy = OmegaConf.to_object(node)
    assert isinstance(policy, PolicySettings)
    return policy
