"""The policy registry: every policy class by its `name`, the one list of policy names.

The built-in policies are listed here; an extension adds its own class with `register_policy` before the
config is loaded, and the config validation, the CLI and the Prefect deployment forms then offer it.
What a policy is built on (item vectors, text embeddings, candidates, clusters, a linear model) is
declared by the class attributes of `Policy`.
"""

from __future__ import annotations

from explorec.config.choices import Registry
from explorec.policies.base import Policy
from explorec.policies.linear import LinUCBPolicy, ThompsonPolicy
from explorec.policies.mmr import MMRPolicy
from explorec.policies.novelty import LinUCBNoveltyPolicy
from explorec.policies.semantic import SemanticClusterPolicy
from explorec.policies.simple import BoltzmannPolicy, EpsilonGreedyPolicy, GreedyPolicy
from explorec.policies.transition import InterestTransitionPolicy

BUILT_IN_POLICIES: tuple[type[Policy], ...] = (
    GreedyPolicy,
    EpsilonGreedyPolicy,
    BoltzmannPolicy,
    LinUCBPolicy,
    ThompsonPolicy,
    SemanticClusterPolicy,
    MMRPolicy,
    LinUCBNoveltyPolicy,
    InterestTransitionPolicy,
)
POLICIES: Registry[type[Policy]] = Registry("policy", ((cls.name, cls) for cls in BUILT_IN_POLICIES))
"""Every policy class by its `name`: the one list of policy names."""


def register_policy(cls: type[Policy]) -> type[Policy]:
    """Register a policy class under its `name`; returns it (usable as a decorator)."""
    return POLICIES.register(cls.name, cls)


def unregister_policy(name: str) -> None:
    """Remove a registered extension policy; the built-in policies stay."""
    POLICIES.unregister(name)


def policy_names() -> tuple[str, ...]:
    """The names of every registered policy, built-in ones first."""
    return POLICIES.names()


def policy_class(name: str) -> type[Policy]:
    """The policy class registered under `name`; an unknown name raises ValueError."""
    return POLICIES.get(name)
