"""The policy registry: every policy class by its `name`, the one list of policy names.

The built-in policies are listed here; an extension adds its own class with `register_policy` before the
config is loaded, and the config validation, the CLI and the Prefect deployment forms then offer it.
What a policy is built on (item vectors, text embeddings, candidates, clusters, a linear model) is
declared by the class attributes of `Policy`.
"""

from __future__ import annotations

from explorec.policies.base import Policy
from explorec.policies.linear import LinUCBPolicy, ThompsonPolicy
from explorec.policies.mmr import MMRPolicy
from explorec.policies.novelty import LinUCBNoveltyPolicy
from explorec.policies.semantic import SemanticClusterPolicy
from explorec.policies.simple import BoltzmannPolicy, EpsilonGreedyPolicy, GreedyPolicy

BUILT_IN_POLICIES: tuple[type[Policy], ...] = (
    GreedyPolicy,
    EpsilonGreedyPolicy,
    BoltzmannPolicy,
    LinUCBPolicy,
    ThompsonPolicy,
    SemanticClusterPolicy,
    MMRPolicy,
    LinUCBNoveltyPolicy,
)
_POLICY_CLASSES: dict[str, type[Policy]] = {cls.name: cls for cls in BUILT_IN_POLICIES}


def register_policy(cls: type[Policy]) -> type[Policy]:
    """Register a policy class under its `name`; returns it (usable as a decorator)."""
    registered = _POLICY_CLASSES.get(cls.name)
    if registered is not None and registered is not cls:
        raise ValueError(f"policy name {cls.name!r} is already taken by {registered.__name__}")
    _POLICY_CLASSES[cls.name] = cls
    return cls


def unregister_policy(name: str) -> None:
    """Remove a registered extension policy; the built-in policies stay."""
    if any(cls.name == name for cls in BUILT_IN_POLICIES):
        raise ValueError(f"policy {name!r} is built in and cannot be unregistered")
    _POLICY_CLASSES.pop(name, None)


def policy_names() -> tuple[str, ...]:
    """The names of every registered policy, built-in ones first."""
    return tuple(_POLICY_CLASSES)


def policy_class(name: str) -> type[Policy]:
    """The policy class registered under `name`; an unknown name raises ValueError."""
    if name not in _POLICY_CLASSES:
        raise ValueError(f"unknown policy {name!r}; expected one of {policy_names()}")
    return _POLICY_CLASSES[name]
