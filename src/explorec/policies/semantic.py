"""Semantic-cluster exploration: slots go to text-embedding clusters the user has not engaged with.

Clusters are k-means clusters of the (L2-normalised) text embeddings. A user's engaged clusters are those of
their visible history. Each slot independently explores with probability `exploration_rate`: a Beta-Thompson
draw θ_c ~ Beta(1 + clicks_c, 1 + skips_c) over the eligible clusters (not engaged, with an item left) picks
the cluster with the largest θ_c, and the slot gets that cluster's best remaining item by score; otherwise (or
when no cluster is eligible) the slot gets the best remaining item overall. Clicks and skips count every
served item.

Propensity of item i at slot s (exact up to the numerical integral for q): with g the best remaining item,
q_c = P(cluster c has the largest Beta draw among eligible clusters) and b_c the best remaining item of c,
p = (1 − rate)·1[i = g] + rate·q_{c(i)}·1[i = b_{c(i)}, c(i) eligible]  (+ rate·1[i = g] if none eligible).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import betainc

from explorec.policies.base import (
    Policy,
    Slate,
    UserState,
    allowed_scores,
    check_logged_slate,
    top_k_indices,
)

BETA_GRID_POINTS = 512
"""Grid intervals for the integral P(cluster c has the largest Beta draw); its error is far below 1e-3."""


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def kmeans(
    *, vectors: np.ndarray, n_clusters: int, rng: np.random.Generator, max_iterations: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding; returns (centroids (c, d), labels (n,))."""
    vectors = np.asarray(vectors, dtype=np.float64)
    n = vectors.shape[0]
    if not 1 <= n_clusters <= n:
        raise ValueError(f"n_clusters must lie in [1, {n}], got {n_clusters}")
    squared_norms = np.einsum("ij,ij->i", vectors, vectors)
    centroids = np.empty((n_clusters, vectors.shape[1]))
    centroids[0] = vectors[rng.integers(n)]
    nearest = np.maximum(squared_norms - 2 * vectors @ centroids[0] + centroids[0] @ centroids[0], 0.0)
    for index in range(1, n_clusters):
        total = nearest.sum()
        pick = rng.choice(n, p=nearest / total) if total > 0 else rng.integers(n)
        centroids[index] = vectors[pick]
        distance = np.maximum(
            squared_norms - 2 * vectors @ vectors[pick] + vectors[pick] @ vectors[pick], 0.0
        )
        nearest = np.minimum(nearest, distance)
    labels = np.full(n, -1)
    for _ in range(max_iterations):
        distances = (
            squared_norms[:, None] - 2 * vectors @ centroids.T + np.einsum("ij,ij->i", centroids, centroids)
        )
        new_labels = np.argmin(distances, axis=1)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        for cluster in range(n_clusters):
            members = labels == cluster
            if members.any():
                centroids[cluster] = vectors[members].mean(axis=0)
            else:  # re-seed an empty cluster at the point farthest from its centroid
                farthest = int(np.argmax(distances[np.arange(n), labels]))
                centroids[cluster] = vectors[farthest]
                labels[farthest] = cluster
    return centroids, labels


def beta_argmax_probabilities(*, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """P(draw c is the largest) for independent Beta(alpha_c, beta_c) draws, by integration on a grid."""
    grid = np.linspace(0.0, 1.0, BETA_GRID_POINTS + 1)
    cdf = betainc(alpha[:, None], beta[:, None], grid[None, :])
    midpoints = 0.5 * (grid[:-1] + grid[1:])
    mid_cdf = betainc(alpha[:, None], beta[:, None], midpoints[None, :])
    # Product of the other clusters' CDFs at each midpoint, via prefix and suffix products.
    ones = np.ones((1, midpoints.size))
    before = np.cumprod(np.vstack([ones, mid_cdf[:-1]]), axis=0)
    after = np.cumprod(np.vstack([ones, mid_cdf[::-1][:-1]]), axis=0)[::-1]
    probabilities = (np.diff(cdf, axis=1) * before * after).sum(axis=1)
    return probabilities / probabilities.sum()


@dataclass
class ClusterUserState:
    """A user's engaged clusters (from the visible history) and per-cluster click and skip counts."""

    engaged: np.ndarray
    clicks: np.ndarray
    skips: np.ndarray


class SemanticClusterPolicy(Policy):
    """Give a share `exploration_rate` of slots to unengaged text clusters, picked by Beta Thompson."""

    name = "semantic_cluster"

    def __init__(
        self,
        *,
        exploration_rate: float,
        text_embeddings: np.ndarray | None = None,
        n_clusters: int = 20,
        cluster_seed: int = 0,
        item_clusters: np.ndarray | None = None,
    ) -> None:
        super().__init__(exploration_rate=exploration_rate)
        if item_clusters is None:
            if text_embeddings is None:
                raise ValueError("semantic_cluster needs text_embeddings or item_clusters")
            _, item_clusters = kmeans(
                vectors=normalize_rows(text_embeddings),
                n_clusters=n_clusters,
                rng=np.random.default_rng(cluster_seed),
            )
        self.item_clusters = np.asarray(item_clusters, dtype=np.int64)
        self.n_clusters = int(self.item_clusters.max()) + 1
        self._members = [np.flatnonzero(self.item_clusters == c) for c in range(self.n_clusters)]

    def initial_state(self, *, history_items: np.ndarray) -> ClusterUserState:
        """Engaged = clusters of the history; no clicks or skips yet."""
        engaged = np.zeros(self.n_clusters, dtype=bool)
        engaged[self.item_clusters[np.asarray(history_items, dtype=np.int64)]] = True
        return ClusterUserState(engaged, np.zeros(self.n_clusters), np.zeros(self.n_clusters))

    def update(
        self, *, state: UserState | None, items: np.ndarray, rewards: np.ndarray, scores: np.ndarray
    ) -> None:
        """Count each served item's reward as clicks and 1 − reward as skips of its cluster."""
        if not isinstance(state, ClusterUserState):
            raise ValueError(
                f"{self.name} needs the ClusterUserState from initial_state, got {type(state).__name__}"
            )
        clusters = self.item_clusters[np.asarray(items, dtype=np.int64)]
        rewards = np.asarray(rewards, dtype=np.float64)
        np.add.at(state.clicks, clusters, rewards)
        np.add.at(state.skips, clusters, 1.0 - rewards)

    def _best_remaining(self, cluster: int, remaining: np.ndarray) -> int:
        """The cluster's best remaining item by score, or -1 when it has none."""
        values = remaining[self._members[cluster]]
        best = int(np.argmax(values))
        return int(self._members[cluster][best]) if np.isfinite(values[best]) else -1

    def _walk(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        k: int,
        state: ClusterUserState | None,
        rng: np.random.Generator | None,
        logged: np.ndarray | None,
    ) -> Slate:
        """Fill k slots, drawing with `rng` (serving) or taking the `logged` items (scoring a log)."""
        if scores.shape[0] != self.item_clusters.shape[0]:
            raise ValueError(
                f"scores cover {scores.shape[0]} items, item_clusters {self.item_clusters.shape[0]}"
            )
        remaining = allowed_scores(scores, excluded, k)
        greedy = top_k_indices(remaining, k)
        state = state if state is not None else self.initial_state(history_items=np.empty(0, np.int64))
        rate = self.exploration_rate
        explore = rng.random(k) < rate if logged is None else np.zeros(k, dtype=bool)
        items = np.empty(k, dtype=np.int64) if logged is None else logged
        propensities = np.empty(k)
        explored = np.zeros(k, dtype=bool)
        cached_key, choice_probabilities = None, np.empty(0)
        cluster_best = {int(c): self._best_remaining(c, remaining) for c in np.flatnonzero(~state.engaged)}
        for slot in range(k):
            best = next(int(g) for g in greedy if np.isfinite(remaining[g]))
            eligible = np.array([c for c, item in cluster_best.items() if item >= 0], dtype=np.int64)
            item = best if logged is None else int(logged[slot])
            if eligible.size and rate > 0:
                if cached_key is None or not np.array_equal(cached_key, eligible):
                    cached_key = eligible
                    choice_probabilities = beta_argmax_probabilities(
                        alpha=1.0 + state.clicks[eligible], beta=1.0 + state.skips[eligible]
                    )
                if explore[slot]:
                    draws = rng.beta(1.0 + state.clicks[eligible], 1.0 + state.skips[eligible])
                    item = cluster_best[int(eligible[np.argmax(draws)])]
                    explored[slot] = True
                propensity = (1.0 - rate) * (item == best)
                own = np.flatnonzero(eligible == self.item_clusters[item])
                if own.size and cluster_best[int(eligible[own[0]])] == item:
                    propensity += rate * choice_probabilities[own[0]]
            else:
                propensity = float(item == best)
            items[slot], propensities[slot] = item, propensity
            remaining[item] = -np.inf
            cluster = int(self.item_clusters[item])
            if cluster_best.get(cluster) == item:
                cluster_best[cluster] = self._best_remaining(cluster, remaining)
        return Slate(items, propensities, explored, greedy)

    def select(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        k: int,
        rng: np.random.Generator,
        state: UserState | None = None,
    ) -> Slate:
        """Serve k items; each slot explores an unengaged cluster with probability exploration_rate."""
        return self._walk(scores=scores, excluded=excluded, k=k, state=state, rng=rng, logged=None)

    def slate_propensities(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        items: np.ndarray,
        state: UserState | None = None,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """The module docstring's exact formula for each logged slot, given the logged earlier slots."""
        items = check_logged_slate(items, np.asarray(excluded)).copy()
        walk = self._walk(scores=scores, excluded=excluded, k=items.size, state=state, rng=None, logged=items)
        return walk.propensities
