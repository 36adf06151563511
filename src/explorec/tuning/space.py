"""Map a trial's suggestions ({dotted config path: value}) onto config dataclasses; no Optuna here."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from explorec.errors import ConfigError
from explorec.policies.spec import PolicySpec

Config = TypeVar("Config")
POLICY_SECTION = "policy"


def apply_suggestions(cfg: Config, suggestions: Mapping[str, Any]) -> Config:
    """Return a copy of a nested config dataclass with every dotted path set to its suggested value."""
    for path, value in suggestions.items():
        cfg = _replace_path(cfg, path.split("."), value, full_path=path)
    return cfg


def _replace_path(node: Any, keys: list[str], value: Any, *, full_path: str) -> Any:
    """Return `node` with the field at `keys` replaced by `value` (dataclasses.replace at every level)."""
    if not dataclasses.is_dataclass(node) or isinstance(node, type):
        raise ConfigError(f"cannot set {full_path!r}: {type(node).__name__} is not a config section")
    names = {item.name for item in dataclasses.fields(node)}
    head, rest = keys[0], keys[1:]
    if head not in names:
        raise ConfigError(f"cannot set {full_path!r}: {type(node).__name__} has no field {head!r}")
    child = _replace_path(getattr(node, head), rest, value, full_path=full_path) if rest else value
    return dataclasses.replace(node, **{head: child})


def apply_trial(cfg: Config, policy: PolicySpec, suggestions: Mapping[str, Any]) -> tuple[Config, PolicySpec]:
    """Return the run config and the policy of one trial: `policy.*` paths set the policy, the rest cfg.

    When cfg has its own `policy` section, `policy.*` paths go there too and the trial's policy is read
    from it.
    """
    has_policy_section = dataclasses.is_dataclass(cfg) and POLICY_SECTION in {
        item.name for item in dataclasses.fields(cfg)
    }
    if has_policy_section:
        trial_cfg = apply_suggestions(cfg, suggestions)
        section = getattr(trial_cfg, POLICY_SECTION)
        return trial_cfg, PolicySpec(section.name, section.exploration_rate)
    prefix = f"{POLICY_SECTION}."
    policy_values = {k.removeprefix(prefix): v for k, v in suggestions.items() if k.startswith(prefix)}
    run_values = {k: v for k, v in suggestions.items() if not k.startswith(prefix)}
    return apply_suggestions(cfg, run_values), apply_suggestions(policy, policy_values)


def base_policy(cfg: Any) -> PolicySpec:
    """Return the configured serving policy as the search's starting point."""
    return PolicySpec(cfg.policy.name, cfg.policy.exploration_rate)


def chosen_config(cfg: Any, search: dict[str, Any]) -> Any:
    """Return the config with the chosen trial's settings (the search's selection rule picked them)."""
    from explorec.errors import ExplorecError

    chosen = search.get("chosen_trial")
    if chosen is None:
        raise ExplorecError(f"the search chose no trial: {search.get('selection')}")
    return apply_suggestions(cfg, chosen["params"])
