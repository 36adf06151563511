"""LinUCB with a text-cluster novelty bonus: upper confidence bounds that also value new-cluster discovery.

Per user, LinUCB's posterior of the residual on item vectors (`linear.LinearUserState`) plus, per text
cluster, whether the user has engaged with it (a cluster of their visible history, or one they have clicked
in since) and how many of its items they were served. With μ_i the posterior mean, width_i =
sqrt(x_iᵀA⁻¹x_i) and c(i) the item's cluster, the value of item i for the next slot is

    μ_i + λ·ν_c(i)·max(μ_i, 0) + α·width_i,    α = rate·scale,  λ = rate·novelty_scale,
    ν_c = 1 / (1 + items of c served so far) for a cluster c the user has not engaged with, 0 otherwise,

and ν_c is 0 for the rest of a slate once the slate holds an item of c. Slots are filled one by one with
the best value among the top-M candidates by μ + λ·ν·max(μ, 0). For a positive mean the bonus counts a
click in a new cluster (a discovery) as 1 + λ·ν clicks; ν decays with the cluster's unclicked exposure, so
the bonus moves on to clusters not tried yet. At rate 0 it is greedy on μ; with novelty_scale 0 it is
LinUCB. Deterministic: propensity 1 for the chosen item (0 for any other), and a slot explored when it
differs from the greedy slate (top k by μ).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from explorec.policies.base import (
    Slate,
    SlateBatch,
    UserState,
    allowed_score_rows,
    check_logged_slate,
    slots_off_greedy_rows,
    top_k_rows,
)
from explorec.policies.linear import LinearUserState, LinUCBPolicy
from explorec.policies.semantic import text_clusters


@dataclass
class NoveltyUserState:
    """LinUCB's posterior, the clusters the user engaged with and the items served per cluster."""

    linear: LinearUserState
    engaged: np.ndarray
    served: np.ndarray


@dataclass(frozen=True)
class _Candidates:
    """Per row: top-M candidate items, which are valid, their means, widths, clusters and novelty."""

    items: np.ndarray
    valid: np.ndarray
    means: np.ndarray
    widths: np.ndarray
    clusters: np.ndarray
    novelty: np.ndarray


class LinUCBNoveltyPolicy(LinUCBPolicy):
    """LinUCB whose bound adds λ·ν·max(μ, 0) for items of clusters the user has not engaged with yet.

    Clusters: `item_clusters` (one id per item), or k-means (`n_clusters`, `cluster_seed`) of the
    `text_embeddings`, as semantic_cluster builds them.
    """

    name = "linucb_novelty"
    uses_text_embeddings = True
    clusters_text = True

    def __init__(
        self,
        *,
        exploration_rate: float,
        item_vectors: np.ndarray,
        item_clusters: np.ndarray | None = None,
        text_embeddings: np.ndarray | None = None,
        n_clusters: int = 20,
        cluster_seed: int = 0,
        novelty_scale: float = 0.5,
        prior_precision: float = 1.0,
        n_candidates: int = 100,
        exploration_scale: float | None = None,
        feedback_weight: float = 1.0,
    ) -> None:
        super().__init__(
            exploration_rate=exploration_rate,
            item_vectors=item_vectors,
            prior_precision=prior_precision,
            n_candidates=n_candidates,
            exploration_scale=exploration_scale,
            feedback_weight=feedback_weight,
        )
        if item_clusters is None:
            if text_embeddings is None:
                raise ValueError("linucb_novelty needs item_clusters or text_embeddings")
            # the same k-means clusters semantic_cluster builds from the same embeddings and seed
            item_clusters = text_clusters(
                text_embeddings=text_embeddings, n_clusters=n_clusters, seed=cluster_seed
            )
        self.item_clusters = np.asarray(item_clusters, dtype=np.int64)
        if self.item_clusters.shape != (self.item_vectors.shape[0],) or self.item_clusters.min() < 0:
            raise ValueError("item_clusters must give every item of item_vectors a cluster id ≥ 0")
        if novelty_scale < 0:
            raise ValueError(f"novelty_scale must be ≥ 0, got {novelty_scale}")
        self.novelty_scale = float(novelty_scale)
        self.n_clusters = int(self.item_clusters.max()) + 1

    def initial_state(
        self, *, history_items: np.ndarray, linear: LinearUserState | None = None
    ) -> NoveltyUserState:
        """Engaged = clusters of the history; nothing served; `linear` or the prior posterior."""
        engaged = np.zeros(self.n_clusters, dtype=bool)
        engaged[self.item_clusters[np.asarray(history_items, dtype=np.int64)]] = True
        if linear is None:
            linear = LinearUserState.prior(
                dimension=self.item_vectors.shape[1], prior_precision=self.prior_precision
            )
        return NoveltyUserState(linear=linear, engaged=engaged, served=np.zeros(self.n_clusters))

    def update(
        self, *, state: UserState | None, items: np.ndarray, rewards: np.ndarray, scores: np.ndarray
    ) -> None:
        """LinUCB's rank-1 updates of the posterior, then `observe_clusters` (a reward > 0 is a click)."""
        state = self._checked(state)
        super().update(state=state.linear, items=items, rewards=rewards, scores=scores)
        self.observe_clusters(state=state, items=items, clicks=np.asarray(rewards) > 0)

    def observe_clusters(self, *, state: UserState | None, items: np.ndarray, clicks: np.ndarray) -> None:
        """Count the served items per cluster; a click engages the user with the item's cluster."""
        state = self._checked(state)
        clusters = self.item_clusters[np.asarray(items, dtype=np.int64)]
        np.add.at(state.served, clusters, 1.0)
        state.engaged[clusters[np.asarray(clicks, dtype=bool)]] = True

    def novelty(self, state: NoveltyUserState) -> np.ndarray:
        """ν per cluster: 1 / (1 + items served) for clusters not engaged with, 0 for engaged ones."""
        return np.where(state.engaged, 0.0, 1.0 / (1.0 + state.served))

    def _checked(self, state: UserState | None) -> NoveltyUserState:
        """The state as a NoveltyUserState, or ValueError."""
        if not isinstance(state, NoveltyUserState):
            raise ValueError(
                f"{self.name} needs the NoveltyUserState from initial_state, got {type(state).__name__}"
            )
        return state

    def _states(self, states: Sequence[UserState | None] | None, n_rows: int) -> list[NoveltyUserState]:
        """One checked state per row (the empty-history state where none is given)."""
        states = [None] * n_rows if states is None else list(states)
        if len(states) != n_rows:
            raise ValueError(f"{len(states)} states for {n_rows} rows of scores")
        empty = np.empty(0, np.int64)
        return [self.initial_state(history_items=empty) if s is None else self._checked(s) for s in states]

    def _candidates_rows(
        self, allowed: np.ndarray, k: int, states: list[NoveltyUserState]
    ) -> tuple[_Candidates, np.ndarray]:
        """The candidates of every row and every row's greedy slate (top k by posterior mean)."""
        # Row by row (a matrix-vector product per user), so one row alone gives the same bits.
        means = np.stack(
            [row + self.item_vectors @ s.linear.theta_mean for row, s in zip(allowed, states, strict=True)]
        )
        novelty = np.stack([self.novelty(s) for s in states])[:, self.item_clusters]
        unengaged = ~np.stack([s.engaged for s in states])[:, self.item_clusters]
        weight = self.exploration_rate * self.novelty_scale
        boosted = means + weight * unengaged * np.maximum(means, 0.0)
        size = max(k, min(self.n_candidates, allowed.shape[1]))
        items = top_k_rows(boosted, size)  # rows with fewer allowed items end in invalid (-inf) entries
        vectors = self.item_vectors[items]
        a_inverse = np.stack([s.linear.a_inverse for s in states])
        widths = np.sqrt(np.maximum(np.einsum("uij,uij->ui", vectors @ a_inverse, vectors), 0.0))
        candidates = _Candidates(
            items=items,
            valid=np.isfinite(np.take_along_axis(boosted, items, axis=1)),
            means=np.take_along_axis(means, items, axis=1),
            widths=widths,
            clusters=self.item_clusters[items],
            novelty=np.take_along_axis(novelty, items, axis=1),
        )
        return candidates, top_k_rows(means, k)

    def _alphas(self, candidates: _Candidates) -> np.ndarray:
        """α per row (n, 1): rate × (`exploration_scale`, or the std of the row's valid candidate means)."""
        if self.exploration_scale is not None:
            return np.full((candidates.items.shape[0], 1), self.exploration_rate * self.exploration_scale)
        spreads = np.array(
            [
                self._scale(means[valid])
                for means, valid in zip(candidates.means, candidates.valid, strict=True)
            ]
        )
        return self.exploration_rate * spreads[:, None]

    def _fill(
        self, candidates: _Candidates, k: int, logged: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fill k slots of every row: (items, propensities); with `logged` rows, score those slates."""
        n_rows = candidates.items.shape[0]
        rows = np.arange(n_rows)
        bounds = candidates.means + self._alphas(candidates) * candidates.widths
        gains = self.exploration_rate * self.novelty_scale * np.maximum(candidates.means, 0.0)
        in_slate = np.zeros((n_rows, self.n_clusters), dtype=bool)
        taken = ~candidates.valid
        items, propensities = np.empty((n_rows, k), np.int64), np.ones((n_rows, k))
        for slot in range(k):
            novelty = np.where(in_slate[rows[:, None], candidates.clusters], 0.0, candidates.novelty)
            values = np.where(taken, -np.inf, bounds + gains * novelty)
            choice = candidates.items[rows, np.argmax(values, axis=1)]
            item = choice if logged is None else logged[:, slot]
            propensities[:, slot] = (item == choice).astype(np.float64)
            taken = taken | (candidates.items == item[:, None])
            in_slate[rows, self.item_clusters[item]] = True
            items[:, slot] = item
        return items, propensities

    def _serve(
        self,
        scores: np.ndarray,
        excluded: np.ndarray,
        k: int,
        states: Sequence[UserState | None] | None,
        logged: np.ndarray | None = None,
    ) -> SlateBatch:
        """Slates (or the scores of `logged` slates) for every row of scores."""
        allowed = allowed_score_rows(scores, excluded, k)
        n_rows, n_items = allowed.shape
        if n_items != self.item_vectors.shape[0]:
            raise ValueError(f"scores cover {n_items} items, item_vectors {self.item_vectors.shape[0]}")
        candidates, greedy = self._candidates_rows(allowed, k, self._states(states, n_rows))
        items, propensities = self._fill(candidates, k, logged)
        return SlateBatch(items, propensities, slots_off_greedy_rows(items, greedy, n_items), greedy)

    def select(
        self, *, scores: np.ndarray, excluded: np.ndarray, k: int, rng: np.random.Generator,
        state: UserState | None = None,
    ) -> Slate:
        """Serve the k best values (see the module docstring) for one user; `rng` is not drawn from."""
        batch = self._serve(np.asarray(scores)[None, :], np.asarray(excluded)[None, :], k, [state])
        return batch.slate(0)

    def select_batch(
        self, *, scores: np.ndarray, excluded: np.ndarray, k: int, rng: np.random.Generator,
        states: Sequence[UserState | None] | None = None,
    ) -> SlateBatch:
        """Serve every row at once: the same slates and flags as `select` row by row."""
        return self._serve(scores, excluded, k, states)

    def slate_propensities(
        self, *, scores: np.ndarray, excluded: np.ndarray, items: np.ndarray, state: UserState | None = None,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """1 where the logged item is the policy's choice after the logged earlier slots, else 0."""
        excluded = np.asarray(excluded)
        items = check_logged_slate(items, excluded)
        batch = self._serve(
            np.asarray(scores)[None, :], excluded[None, :], items.size, [state], items[None, :]
        )
        return batch.propensities[0]
