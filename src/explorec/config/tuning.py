"""Typed settings of the Optuna search: the search space as data, objectives, storage, workers, selection.

The search space maps a dotted config path (`model.embedding_dim`, `policy.exploration_rate`) to a
distribution spec. `policy.*` paths set the exploration policy the trial serves with (a
`explorec.policies.spec.PolicySpec`).
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
    """One Optuna study (`explorec tune`): what is searched, what is optimised, where trials are stored, how
    they run. By default multi-objective: maximise (validation NDCG@10 of the slates the policy serves,
    diversity of those slates).

    Fields:
    - study_name: the study's name in the storage; rerunning with the same name resumes it.
    - storage: `sqlite:///mlruns/optuna.db` (relative paths resolve under the project root), any SQLAlchemy
      URL (`postgresql://user:pw@host/db`, run through psycopg 3) for workers on several machines, or
      `journal:///path/file.log` / `journal:mlruns/optuna.log` for a journal file shared by several local
      processes. Printed and tagged with the password masked.
    - n_trials: the budget, counted as COMPLETE + PRUNED trials of the study (a resumed study runs only the
      rest). n_workers: local worker processes on the shared storage (1 = in this process); `explorec tune`
      on another machine with the same storage and study_name adds its workers to the same budget.
    - mode: `multi` maximises (served NDCG@10, diversity); `single` maximises served NDCG@10 and prunes.
    - sampler / seed: `tpe`, `nsga2` or `random`, seeded. pruner: single mode only.
    - diversity_objective: `ild` (intra-list diversity on the text encoder's item vectors) or `coverage`
      (catalogue coverage of all served slates). diversity_floor: the selection gate (best accuracy among
      Pareto trials with diversity >= floor, see report.py); 0.2 matches the ILD floor of the promotion gates
      (registry GatesConfig).
    - slate_size: K of the served slates (NDCG@K, ILD over K items). serving_seed: the policy's random stream.
    - heartbeat_interval_s / grace_period_s: RDB heartbeat; a RUNNING trial without a heartbeat for the
      grace period (seconds) is failed and retried (max_retry times) when any worker starts its next trial;
      same-host deaths are caught at once by pid, also when a round of workers ends.
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
