"""Build any policy by name with one exploration_rate knob."""

from __future__ import annotations

from typing import Any

from explorec.policies.base import Policy
from explorec.policies.linear import LinUCBPolicy, ThompsonPolicy
from explorec.policies.mmr import MMRPolicy
from explorec.policies.novelty import LinUCBNoveltyPolicy
from explorec.policies.semantic import SemanticClusterPolicy
from explorec.policies.simple import BoltzmannPolicy, EpsilonGreedyPolicy, GreedyPolicy

POLICY_CLASSES: dict[str, type[Policy]] = {
    cls.name: cls
    for cls in (
        GreedyPolicy,
        EpsilonGreedyPolicy,
        BoltzmannPolicy,
        LinUCBPolicy,
        ThompsonPolicy,
        SemanticClusterPolicy,
        MMRPolicy,
        LinUCBNoveltyPolicy,
    )
}
POLICY_NAMES: tuple[str, ...] = tuple(POLICY_CLASSES)
POLICIES_ON_ITEM_VECTORS = ("linucb", "thompson", "linucb_novelty")
"""Policies built on the item-tower vectors (`item_vectors`)."""
POLICIES_ON_TEXT_VECTORS = ("semantic_cluster", "mmr", "linucb_novelty")
"""Policies built on the text embeddings (`text_embeddings`, or `item_clusters` made from them)."""
POLICIES_WITH_CANDIDATES = ("linucb", "thompson", "mmr", "linucb_novelty")
"""Policies that re-rank the top `n_candidates` items by score."""
POLICIES_WITH_CLUSTERS = ("semantic_cluster", "linucb_novelty")
"""Policies that cluster the text embeddings into `n_clusters`."""


def build_policy(name: str, exploration_rate: float, **params: Any) -> Policy:
    """Build the policy `name` (one of POLICY_NAMES); `params` are that policy's keyword arguments.

    linucb/thompson need `item_vectors`; semantic_cluster needs `text_embeddings` (or `item_clusters`);
    mmr needs `text_embeddings`; linucb_novelty needs `item_vectors` and `text_embeddings` (or
    `item_clusters`). Unknown names or parameters raise ValueError/TypeError.
    """
    if name not in POLICY_CLASSES:
        raise ValueError(f"unknown policy {name!r}; expected one of {POLICY_NAMES}")
    return POLICY_CLASSES[name](exploration_rate=exploration_rate, **params)
