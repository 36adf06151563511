"""Semantic-cluster exploration: slots go to text-embedding clusters the user has not engaged with.

Clusters are k-means clusters of the (L2-normalised) text embeddings. A user's engaged clusters are those of
their visible history. Each slot independently explores with probability `exploration_rate`: Beta-Thompson
draws θ_c ~ Beta(1 + clicks_c, 1 + skips_c) of the unengaged clusters pick the eligible cluster (not engaged,
with an item left) with the largest θ_c, and the slot gets that cluster's best remaining item by score;
otherwise (or when no cluster is eligible) the slot gets the best remaining item overall. Clicks and skips
count every served item. (Every unengaged cluster is drawn, eligible or not, so the number of draws does not
depend on the slate; the argmax over the eligible ones has the law of drawing only those.)

Propensity of item i at slot s (exact up to the numerical integral for q): with g the best remaining item,
q_c = P(cluster c has the largest Beta draw among eligible clusters) and b_c the best remaining item of c,
p = (1 − rate)·1[i = g] + rate·q_{c(i)}·1[i = b_{c(i)}, c(i) eligible]  (+ rate·1[i = g] if none eligible).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import betainc

from explorec.policies.base import (
    Policy,
    Slate,
    SlateBatch,
    UserState,
    allowed_score_rows,
    allowed_scores,
    check_logged_slate,
    first_untaken_rows,
    top_k_indices,
    top_k_rows,
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


_GRID = np.linspace(0.0, 1.0, BETA_GRID_POINTS + 1)
_MIDPOINTS = 0.5 * (_GRID[:-1] + _GRID[1:])


@functools.lru_cache(maxsize=4096)
def _beta_grid(alpha: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Beta(alpha, beta): CDF increments over the grid's intervals and the CDF at their midpoints (cached)."""
    increments = np.diff(betainc(alpha, beta, _GRID))
    midpoint_cdf = betainc(alpha, beta, _MIDPOINTS)
    increments.setflags(write=False)
    midpoint_cdf.setflags(write=False)
    return increments, midpoint_cdf


def argmax_probability_rows(*, alpha: np.ndarray, beta: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row, P(draw c is the largest among the Beta(alpha, beta) draws of the masked clusters); 0 off it.

    Integrated on a grid, per row independently of the other rows (so one row alone gives the same bits).
    """
    alpha, beta = np.asarray(alpha, np.float64), np.asarray(beta, np.float64)
    mask = np.asarray(mask, dtype=bool)
    probabilities = np.zeros(mask.shape)
    rows = np.flatnonzero(mask.any(axis=1))
    columns = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return probabilities
    sub_mask = mask[np.ix_(rows, columns)]
    pairs = np.stack([alpha[rows][:, columns][sub_mask], beta[rows][:, columns][sub_mask]], axis=1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    tables = [_beta_grid(float(a), float(b)) for a, b in unique]
    # Table row 0 stands for a cluster off the mask: no probability mass, CDF 1 everywhere.
    increment_table = np.vstack([np.zeros(BETA_GRID_POINTS), *[table[0] for table in tables]])
    cdf_table = np.vstack([np.ones(BETA_GRID_POINTS), *[table[1] for table in tables]])
    index = np.zeros(sub_mask.shape, dtype=np.int64)
    index[sub_mask] = 1 + inverse.ravel()
    increments, midpoint_cdf = increment_table[index], cdf_table[index]
    # Product of the other clusters' CDFs at each midpoint: prefix (running) times suffix products.
    n_columns = columns.size
    after = np.empty(increments.shape)
    after[:, -1] = 1.0
    for column in range(n_columns - 2, -1, -1):
        np.multiply(after[:, column + 1], midpoint_cdf[:, column + 1], out=after[:, column])
    mass = np.empty(sub_mask.shape)
    before = np.ones((rows.size, BETA_GRID_POINTS))
    for column in range(n_columns):
        mass[:, column] = (increments[:, column] * before * after[:, column]).sum(axis=1)
        before = before * midpoint_cdf[:, column]
    total = np.cumsum(mass, axis=1)[:, -1:]  # a sequential sum: clusters off the mask add exact zeros
    probabilities[np.ix_(rows, columns)] = mass / np.where(total > 0, total, 1.0)
    return probabilities


def beta_argmax_probabilities(*, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """P(draw c is the largest) for independent Beta(alpha_c, beta_c) draws, by integration on a grid."""
    alpha = np.asarray(alpha, np.float64)
    return argmax_probability_rows(
        alpha=alpha[None, :], beta=np.asarray(beta, np.float64)[None, :], mask=np.ones((1, alpha.size), bool)
    )[0]


@dataclass
class ClusterUserState:
    """A user's engaged clusters (from the visible history) and per-cluster click and skip counts."""

    engaged: np.ndarray
    clicks: np.ndarray
    skips: np.ndarray


def text_clusters(*, text_embeddings: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """k-means cluster id of every item from its L2-normalised text embedding (seeded k-means++)."""
    _, labels = kmeans(
        vectors=normalize_rows(text_embeddings), n_clusters=n_clusters, rng=np.random.default_rng(seed)
    )
    return labels


def padded_cluster_members(item_clusters: np.ndarray, n_clusters: int) -> np.ndarray:
    """Members of each cluster as rows (n_clusters, largest size), padded with n_items (past the end).

    Batch paths append a -inf column at index n_items, so padding never wins `best_member`.
    """
    members = [np.flatnonzero(item_clusters == c) for c in range(n_clusters)]
    padded = np.full((n_clusters, max(m.size for m in members)), item_clusters.size, dtype=np.int64)
    for cluster, items in enumerate(members):
        padded[cluster, : items.size] = items
    return padded


def best_member(values: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Along the last axis, the member with the largest value (first on ties); -1 when none is finite."""
    position = np.argmax(values, axis=-1)[..., None]
    top = np.take_along_axis(values, position, axis=-1)[..., 0]
    return np.where(np.isfinite(top), np.take_along_axis(members, position, axis=-1)[..., 0], -1)


def cluster_names(
    *, text_embeddings: np.ndarray, item_clusters: np.ndarray, titles: Sequence[str], n_titles: int = 3
) -> list[str]:
    """Each cluster named by its most central distinct titles (highest cosine to its mean direction)."""
    unit = normalize_rows(text_embeddings)
    clusters = np.asarray(item_clusters, np.int64)
    names = []
    for cluster in range(int(clusters.max()) + 1):
        members = np.flatnonzero(clusters == cluster)
        if members.size == 0:
            names.append(f"cluster {cluster}")
            continue
        centre = unit[members].mean(axis=0)
        order = members[np.argsort(-(unit[members] @ centre), kind="stable")]
        distinct = list(dict.fromkeys(str(titles[item]) for item in order))  # a catalogue may repeat a title
        names.append(" / ".join(distinct[:n_titles]))
    return names


class SemanticClusterPolicy(Policy):
    """Give a share `exploration_rate` of slots to unengaged text clusters, picked by Beta Thompson."""

    name = "semantic_cluster"
    uses_text_embeddings = True
    clusters_text = True

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
            item_clusters = text_clusters(
                text_embeddings=text_embeddings, n_clusters=n_clusters, seed=cluster_seed
            )
        self.item_clusters = np.asarray(item_clusters, dtype=np.int64)
        self.n_clusters = int(self.item_clusters.max()) + 1
        self._members = [np.flatnonzero(self.item_clusters == c) for c in range(self.n_clusters)]
        self._padded_members = padded_cluster_members(self.item_clusters, self.n_clusters)

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
        unengaged = np.flatnonzero(~state.engaged)
        draws = self._cluster_draws(rng, state, unengaged, int(explore.sum())) if logged is None else None
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
                    mask = np.zeros((1, self.n_clusters), dtype=bool)
                    mask[0, eligible] = True
                    choice_probabilities = argmax_probability_rows(
                        alpha=1.0 + state.clicks[None, :], beta=1.0 + state.skips[None, :], mask=mask
                    )[0]
                if explore[slot]:
                    slot_draws = draws[int(explore[:slot].sum())]
                    on = np.isin(unengaged, eligible)
                    item = cluster_best[int(unengaged[np.argmax(np.where(on, slot_draws, -np.inf))])]
                    explored[slot] = True
                propensity = (1.0 - rate) * (item == best)
                cluster = int(self.item_clusters[item])
                if cluster_best.get(cluster, -1) == item:
                    propensity += rate * choice_probabilities[cluster]
            else:
                propensity = float(item == best)
            items[slot], propensities[slot] = item, propensity
            remaining[item] = -np.inf
            cluster = int(self.item_clusters[item])
            if cluster_best.get(cluster) == item:
                cluster_best[cluster] = self._best_remaining(cluster, remaining)
        return Slate(items, propensities, explored, greedy)

    def _cluster_draws(
        self, rng: np.random.Generator, state: ClusterUserState, unengaged: np.ndarray, n_explore: int
    ) -> np.ndarray:
        """θ ~ Beta(1 + clicks, 1 + skips) of every unengaged cluster, one row per exploring slot.

        Drawn for all unengaged clusters (eligible or not), so the number of draws never depends on which
        items the slate takes; the argmax over the eligible ones has the same law as drawing only those.
        """
        if self.exploration_rate == 0.0 or n_explore == 0 or unengaged.size == 0:
            return np.empty((n_explore, unengaged.size))
        alpha, beta = 1.0 + state.clicks[unengaged], 1.0 + state.skips[unengaged]
        return rng.beta(alpha, beta, size=(n_explore, unengaged.size))

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

    def select_batch(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        k: int,
        rng: np.random.Generator,
        states: Sequence[UserState | None] | None = None,
    ) -> SlateBatch:
        """Serve every row at once: the same slates, propensities and flags as `select` row by row.

        The Generator is drawn in the per-user order (row by row: the k explore uniforms, then the Beta
        draws of the exploring slots), so a batch equals successive `select` calls draw for draw.
        """
        allowed = allowed_score_rows(scores, excluded, k)
        n_rows, n_items = allowed.shape
        if n_items != self.item_clusters.shape[0]:
            raise ValueError(f"scores cover {n_items} items, item_clusters {self.item_clusters.shape[0]}")
        states = self._batch_states(states, n_rows)
        engaged = np.stack([state.engaged for state in states])
        alpha = 1.0 + np.stack([state.clicks for state in states])
        beta = 1.0 + np.stack([state.skips for state in states])
        rate, rows = self.exploration_rate, np.arange(n_rows)
        greedy = top_k_rows(allowed, k)
        remaining = np.concatenate([allowed, np.full((n_rows, 1), -np.inf)], axis=1)
        best = best_member(
            remaining[:, self._padded_members],
            np.broadcast_to(self._padded_members, (n_rows, *self._padded_members.shape)),
        )
        explore = np.zeros((n_rows, k), dtype=bool)
        draws = np.full((n_rows, k, self.n_clusters), -np.inf)  # per slot, θ of the unengaged clusters
        for row, state in enumerate(states):
            explore[row] = rng.random(k) < rate
            unengaged = np.flatnonzero(~state.engaged)
            slot_draws = self._cluster_draws(rng, state, unengaged, int(explore[row].sum()))
            if slot_draws.size:
                draws[row, np.flatnonzero(explore[row])[:, None], unengaged[None, :]] = slot_draws
        items, propensities = np.empty((n_rows, k), np.int64), np.empty((n_rows, k))
        explored = np.zeros((n_rows, k), dtype=bool)
        chosen = np.zeros((n_rows, n_items), dtype=bool)
        choice, choice_mask = np.zeros(engaged.shape), np.zeros(engaged.shape, dtype=bool)
        for slot in range(k):
            first = first_untaken_rows(greedy, chosen)
            eligible = ~engaged & (best >= 0)
            active = eligible.any(axis=1) & (rate > 0)
            stale = active & (eligible != choice_mask).any(axis=1)
            if stale.any():
                choice[stale] = argmax_probability_rows(
                    alpha=alpha[stale], beta=beta[stale], mask=eligible[stale]
                )
                choice_mask[stale] = eligible[stale]
            exploring = explore[:, slot] & active
            item = first.copy()
            picked = np.argmax(np.where(eligible, draws[:, slot], -np.inf), axis=1)
            item[exploring] = best[exploring, picked[exploring]]
            cluster = self.item_clusters[item]
            own = eligible[rows, cluster] & (best[rows, cluster] == item)
            is_first = item == first
            bonus = np.where(own, rate * choice[rows, cluster], 0.0)
            propensities[:, slot] = np.where(active, (1.0 - rate) * is_first + bonus, is_first * 1.0)
            items[:, slot], explored[:, slot] = item, exploring
            chosen[rows, item] = True
            remaining[rows, item] = -np.inf
            hit = np.flatnonzero(best[rows, cluster] == item)
            if hit.size:
                members = self._padded_members[cluster[hit]]
                best[hit, cluster[hit]] = best_member(
                    np.take_along_axis(remaining[hit], members, axis=1), members
                )
        return SlateBatch(items, propensities, explored, greedy)

    def _batch_states(self, states: Sequence[UserState | None] | None, n_rows: int) -> list[ClusterUserState]:
        """One ClusterUserState per row (the empty-history state where none is given)."""
        states = [None] * n_rows if states is None else list(states)
        if len(states) != n_rows:
            raise ValueError(f"{len(states)} states for {n_rows} rows of scores")
        empty = np.empty(0, np.int64)
        return [self.initial_state(history_items=empty) if state is None else state for state in states]

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
