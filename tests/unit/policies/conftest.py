"""A small synthetic catalogue shared by the policy tests: scores, item-tower vectors and text embeddings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from explorec.policies.base import Policy
from explorec.policies.spec import PolicySpec


@dataclass(frozen=True)
class Catalogue:
    """Scores (distinct), unit item vectors, text embeddings and three text clusters of 30 items."""

    scores: np.ndarray
    item_vectors: np.ndarray
    text_embeddings: np.ndarray
    item_clusters: np.ndarray

    def params(self, name: str) -> dict[str, object]:
        """The constructor parameters each policy needs beyond exploration_rate."""
        if name in ("linucb", "thompson"):
            return {"item_vectors": self.item_vectors}
        if name == "semantic_cluster":
            return {"item_clusters": self.item_clusters}
        if name == "mmr":
            return {"text_embeddings": self.text_embeddings}
        if name == "linucb_novelty":
            return {"item_vectors": self.item_vectors, "item_clusters": self.item_clusters}
        if name == "interest_transition":
            counts = np.array([[0.0, 5.0, 1.0], [2.0, 0.0, 3.0], [4.0, 1.0, 0.0]])
            return {"item_clusters": self.item_clusters, "cluster_transitions": counts}
        return {}

    def policy(self, name: str, exploration_rate: float) -> Policy:
        """Build policy `name` on this catalogue."""
        return PolicySpec(name, exploration_rate).build(**self.params(name))


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    """30 items in 3 well-separated text clusters of 10; scores a random permutation of 0.01..0.30."""
    rng = np.random.default_rng(7)
    n_items = 30
    item_clusters = np.repeat(np.arange(3), 10)
    centres = np.eye(3, 6) * 5.0
    text = centres[item_clusters] + rng.normal(scale=0.3, size=(n_items, 6))
    vectors = rng.normal(size=(n_items, 4))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = rng.permutation(np.arange(1, n_items + 1)) / 100.0
    return Catalogue(scores=scores, item_vectors=vectors, text_embeddings=text, item_clusters=item_clusters)
