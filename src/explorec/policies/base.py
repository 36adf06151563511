"""The policy interface: a slate with per-slot propensities, exploration flags and its deviation from greedy.

Propensity convention (every policy in this package): `Slate.propensities[s]` is the probability that the
policy put `Slate.items[s]` in slot `s` *given the items it had already put in slots 0..s-1* (and given the
scores, exclusions and user state of the call). The product over slots is therefore the probability of the
whole ordered slate. Deterministic policies log 1.0; Thompson sampling logs a Monte Carlo estimate.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

UserState = Any
"""Per-user state a policy keeps between visits (None when stateless); see each policy's `initial_state`."""


@dataclass(frozen=True)
class Slate:
    """One served slate: items by slot, each slot's propensity, whether it explored, and the greedy slate."""

    items: np.ndarray
    propensities: np.ndarray
    explored: np.ndarray
    greedy_items: np.ndarray

    @property
    def deviation_rate(self) -> float:
        """Share of slots whose item differs from the greedy slate's item at the same position (δ)."""
        return float(np.mean(self.items != self.greedy_items))


@dataclass(frozen=True)
class SlateBatch:
    """Slates of many users at once: every field has shape (n_users, k)."""

    items: np.ndarray
    propensities: np.ndarray
    explored: np.ndarray
    greedy_items: np.ndarray

    @property
    def deviation_rate(self) -> float:
        """Share of all slots that differ from the greedy slate at the same position (δ)."""
        return deviation_rate(items=self.items, greedy_items=self.greedy_items)

    def slate(self, row: int) -> Slate:
        """Return the slate of one user (row) of the batch."""
        return Slate(
            items=self.items[row],
            propensities=self.propensities[row],
            explored=self.explored[row],
            greedy_items=self.greedy_items[row],
        )


def deviation_rate(*, items: np.ndarray, greedy_items: np.ndarray) -> float:
    """Share of slots whose item differs from the greedy slate's item at that position, over a batch (δ)."""
    items = np.asarray(items)
    greedy_items = np.asarray(greedy_items)
    if items.shape != greedy_items.shape:
        raise ValueError(f"items {items.shape} and greedy_items {greedy_items.shape} differ in shape")
    if items.size == 0:
        return float("nan")
    return float(np.mean(items != greedy_items))


def stack_slates(slates: Sequence[Slate]) -> SlateBatch:
    """Stack equally long slates into one SlateBatch."""
    return SlateBatch(
        items=np.stack([s.items for s in slates]),
        propensities=np.stack([s.propensities for s in slates]),
        explored=np.stack([s.explored for s in slates]),
        greedy_items=np.stack([s.greedy_items for s in slates]),
    )


def top_k_indices(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values in descending order (ties broken by lower index), via argpartition."""
    n = values.shape[0]
    if k >= n:
        candidates = np.arange(n)
    else:
        candidates = np.argpartition(-values, k - 1)[:k]
        # argpartition may cut a tie arbitrarily: pull in every value tied with the k-th so ties go by index.
        kth = values[candidates].min()
        if np.count_nonzero(values == kth) > np.count_nonzero(values[candidates] == kth):
            candidates = np.union1d(candidates, np.flatnonzero(values == kth))
    order = np.lexsort((candidates, -values[candidates]))
    return candidates[order][:k]


BLOCK_PREFILTER_MIN_BLOCK = 4
"""`top_k_rows` first narrows each row to its best blocks when blocks of n // (8k) ≥ this many items fit."""


def top_k_rows(values: np.ndarray, k: int) -> np.ndarray:
    """Per row, `top_k_indices` of that row (descending, ties by lower index), vectorised over rows.

    For k much smaller than the row length, each row is first narrowed to the items of its best blocks
    (`_best_block_items`), which always hold every item that can be in that row's top k.
    """
    values = np.asarray(values)
    n_rows, n = values.shape
    if 0 < k < n and n_rows and n // (8 * k) >= BLOCK_PREFILTER_MIN_BLOCK:
        pool = _best_block_items(values, k, block=n // (8 * k))
        if pool is not None:
            items, pool_values = pool
            return np.take_along_axis(items, _top_k_rows_exact(pool_values, k), axis=1)
    return _top_k_rows_exact(values, k)


def _best_block_items(values: np.ndarray, k: int, *, block: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Per row, (items, their values) of every block whose maximum is ≥ the row's k-th largest block maximum.

    Each of the k largest block maxima is a distinct item ≥ that threshold t, so the row's k-th largest value
    is ≥ t, and every item ≥ it lies in a block whose maximum is ≥ t: the pool holds every top-k item, ties
    included, in ascending order (rows are filled up with blocks below t, whose items cannot be in the top
    k; positions past the row end carry -inf). None when some threshold is -inf.
    """
    n_rows, n = values.shape
    whole = n // block * block  # items in whole blocks; the rest form one short last block
    block_max = values[:, :whole].reshape(n_rows, whole // block, block).max(axis=2)
    if whole < n:
        block_max = np.concatenate([block_max, values[:, whole:].max(axis=1, keepdims=True)], axis=1)
    threshold = -np.partition(-block_max, k - 1, axis=1)[:, k - 1 : k]
    if not np.isfinite(threshold).all():
        return None
    keep = block_max >= threshold
    width = int(keep.sum(axis=1).max())
    blocks = np.argsort(~keep, axis=1, kind="stable")[:, :width]  # kept blocks first, ascending
    items = (blocks[:, :, None] * block + np.arange(block)).reshape(n_rows, width * block)
    past_end = items >= n
    pool_values = np.take_along_axis(values, np.minimum(items, n - 1), axis=1)
    pool_values[past_end] = -np.inf
    return items, pool_values


def _top_k_rows_exact(values: np.ndarray, k: int) -> np.ndarray:
    """`top_k_rows` without the block prefilter."""
    n_rows, n = values.shape
    if k >= n:
        candidates = np.broadcast_to(np.arange(n), values.shape).copy()
    else:
        candidates = np.sort(np.argpartition(-values, k - 1, axis=1)[:, :k], axis=1)
    order = np.argsort(-np.take_along_axis(values, candidates, axis=1), axis=1, kind="stable")
    ranked = np.take_along_axis(candidates, order, axis=1)[:, :k]
    if k < n and n_rows:
        # argpartition may cut a tie arbitrarily: rows with a value tied to the k-th outside the cut are
        # ranked again one by one, so ties always go to the lower index (as in `top_k_indices`).
        kth = values[np.arange(n_rows), ranked[:, -1]][:, None]
        inside = np.count_nonzero(np.take_along_axis(values, ranked, axis=1) == kth, axis=1)
        for row in np.flatnonzero(np.count_nonzero(values == kth, axis=1) > inside):
            ranked[row] = top_k_indices(values[row], k)
    return ranked


def allowed_score_rows(scores: np.ndarray, excluded: np.ndarray, k: int) -> np.ndarray:
    """Batch `allowed_scores`: rows of scores as float, excluded at -inf, after shape and size checks."""
    scores = np.asarray(scores, dtype=np.float64)
    excluded = np.asarray(excluded, dtype=bool)
    if scores.ndim != 2 or scores.shape != excluded.shape:
        raise ValueError(f"scores {scores.shape} and excluded {excluded.shape} must be equal 2-d shapes")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    n_allowed = excluded.shape[1] - excluded.sum(axis=1)
    if k < 1 or (n_allowed < k).any():
        raise ValueError(f"k={k} but some rows have only {int(n_allowed.min())} items not excluded")
    return np.where(excluded, -np.inf, scores)


def first_untaken_rows(ranked: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Per row, the first item of `ranked` (n, m) whose entry in boolean `chosen` (n, n_items) is False."""
    taken = np.take_along_axis(chosen, ranked, axis=1)
    return ranked[np.arange(ranked.shape[0]), np.argmax(~taken, axis=1)]


def slots_off_greedy_rows(items: np.ndarray, greedy: np.ndarray, n_items: int) -> np.ndarray:
    """Batch `slots_off_greedy`: per row and slot, whether the item differs from the best remaining greedy."""
    rows = np.arange(items.shape[0])
    chosen = np.zeros((items.shape[0], n_items), dtype=bool)
    off = np.empty(items.shape, dtype=bool)
    for slot in range(items.shape[1]):
        off[:, slot] = items[:, slot] != first_untaken_rows(greedy, chosen)
        chosen[rows, items[:, slot]] = True
    return off


def best_remaining_items(ranked: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Per slot s, the first item of `ranked` not among items[:s] (`ranked` holds ≥ len(items) items)."""
    taken: set[int] = set()
    best = np.empty(items.size, dtype=np.int64)
    for slot, item in enumerate(items):
        best[slot] = next(int(g) for g in ranked if int(g) not in taken)
        taken.add(int(item))
    return best


def best_remaining_laws(ranked: np.ndarray, items: np.ndarray, n_items: int) -> Iterator[np.ndarray]:
    """Per slot s, an n_items row that is 1 at the best remaining item of `ranked` after items[:s], else 0."""
    for best in best_remaining_items(ranked, items):
        row = np.zeros(n_items)
        row[best] = 1.0
        yield row


def slots_off_greedy(items: np.ndarray, greedy: np.ndarray) -> np.ndarray:
    """Per slot, whether the item differs from the best remaining item of the greedy order `greedy`."""
    return np.asarray(items) != best_remaining_items(greedy, np.asarray(items))


def check_logged_slate(items: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """Return a logged slate as int ids after checking they are distinct and within the catalogue."""
    items = np.asarray(items, dtype=np.int64)
    if items.ndim != 1 or np.unique(items).size != items.size:
        raise ValueError(f"a logged slate must be a 1-d array of distinct items, got {items}")
    if items.size and (items.min() < 0 or items.max() >= excluded.shape[0]):
        raise ValueError(f"logged items must lie in [0, {excluded.shape[0]})")
    return items


def allowed_scores(scores: np.ndarray, excluded: np.ndarray, k: int) -> np.ndarray:
    """Return scores as float with excluded items at -inf, after checking shapes and that k items remain."""
    scores = np.asarray(scores, dtype=np.float64)
    excluded = np.asarray(excluded, dtype=bool)
    if scores.ndim != 1 or scores.shape != excluded.shape:
        raise ValueError(f"scores {scores.shape} and excluded {excluded.shape} must be equal 1-d shapes")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    n_allowed = int(excluded.size - excluded.sum())
    if k < 1 or k > n_allowed:
        raise ValueError(f"k={k} but only {n_allowed} items are not excluded")
    return np.where(excluded, -np.inf, scores)


def check_exploration_rate(exploration_rate: float) -> float:
    """Return the rate as float, or raise ValueError when it is outside [0, 1]."""
    rate = float(exploration_rate)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"exploration_rate must lie in [0, 1], got {exploration_rate}")
    return rate


class Policy(ABC):
    """An exploration policy: serves slates from scores, keeps optional per-user state, logs propensities."""

    name: str = "policy"
    reward_scale_scores: bool = False
    """True for policies that model the reward as score + a learned residual, so their scores must be on
    the reward scale (click probabilities), not any monotone score."""
    uses_item_vectors: bool = False
    """Built on the item-tower vectors (keyword `item_vectors`)."""
    uses_text_embeddings: bool = False
    """Built on the text embeddings (keyword `text_embeddings`, or `item_clusters` made from them)."""
    reranks_candidates: bool = False
    """Re-ranks the top `n_candidates` items by score."""
    clusters_text: bool = False
    """Clusters the text embeddings into `n_clusters` (or takes the clusters as `item_clusters`)."""
    learns_linear_model: bool = False
    """Keeps a per-user Bayesian linear model updated online: served feedback counts `feedback_weight`, and
    the simulator serves it from the prior with its shared online model's posterior as the user state."""
    learns_cluster_transitions: bool = False
    """Learns how interests move between text clusters from the training histories (keywords `history_items`
    and `history_offsets`: every user's items oldest first in CSR form; or `cluster_transitions`: their
    counts, as `transition.cluster_transition_counts` makes them)."""

    def __init__(self, *, exploration_rate: float) -> None:
        self.exploration_rate = check_exploration_rate(exploration_rate)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(exploration_rate={self.exploration_rate})"

    @abstractmethod
    def select(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        k: int,
        rng: np.random.Generator,
        state: UserState | None = None,
    ) -> Slate:
        """Serve k distinct non-excluded items for one user; randomness only through `rng`."""

    @abstractmethod
    def slate_propensities(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        items: np.ndarray,
        state: UserState | None = None,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Per slot s, the probability this policy would put items[s] at slot s after items[:s] (for OPE).

        Same meaning as `Slate.propensities`, for any logged slate (e.g. another policy's); 0 for an item it
        could not have chosen there. Scores, exclusions and state must be those of the logged decision.
        """

    def slot_laws(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        items: np.ndarray,
        state: UserState | None = None,
    ) -> Iterator[np.ndarray] | None:
        """Per slot s, the probability of every item in slot s after items[:s]: one n_items row per slot.

        The whole conditional law of each slot, where `slate_propensities` gives one item's; it lets an
        off-policy evaluation average a policy's exposure over its own prefixes without counting samples
        (`slot_exposure`). Rows come one at a time, so a large catalogue never holds k of them at once.
        None: no closed form (exposures are then counted).
        """
        del scores, excluded, items, state
        return None

    def slot_exposure(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        items: np.ndarray,
        examination: np.ndarray,
        state: UserState | None = None,
    ) -> np.ndarray | None:
        """Σ_s examination[s]·P(item in slot s | items[:s]) for every item (None where `slot_laws` is)."""
        laws = self.slot_laws(scores=scores, excluded=excluded, items=items, state=state)
        if laws is None:
            return None
        exposure = np.zeros(np.asarray(excluded).size)
        for weight, law in zip(np.asarray(examination, dtype=np.float64), laws, strict=True):
            exposure += weight * law
        return exposure

    def select_batch(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        k: int,
        rng: np.random.Generator,
        states: Sequence[UserState | None] | None = None,
    ) -> SlateBatch:
        """Serve one slate per row of `scores` (n_users, n_items); this default loops over `select`."""
        states = [None] * scores.shape[0] if states is None else states
        return stack_slates(
            [
                self.select(scores=scores[row], excluded=excluded[row], k=k, rng=rng, state=states[row])
                for row in range(scores.shape[0])
            ]
        )

    def initial_state(self, *, history_items: np.ndarray) -> UserState | None:
        """Return a new user's state from the items in their visible history (None: stateless policy)."""
        del history_items
        return None

    def update(
        self, *, state: UserState | None, items: np.ndarray, rewards: np.ndarray, scores: np.ndarray
    ) -> None:
        """Update `state` in place with the rewards of served `items` (`scores`: the scores served from)."""
        del state, items, rewards, scores
