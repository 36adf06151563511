"""Maximal marginal relevance re-ranking on text-embedding cosine similarity (deterministic)."""

from __future__ import annotations

import numpy as np

from explorec.policies.base import Policy, Slate, UserState, allowed_scores, check_logged_slate, top_k_indices
from explorec.policies.semantic import normalize_rows


class MMRPolicy(Policy):
    """Greedy MMR over the top-M items by score, λ = 1 − exploration_rate; propensity 1 per slot.

    Slot value = λ·relevance(i) − (1 − λ)·max_{j already in the slate} cos(e_i, e_j), relevance = the score
    min-max scaled to [0, 1] over the M candidates, e the L2-normalised text embeddings. λ = 1 is greedy.
    `explored[s]` is True when the slot's item is not the best remaining item by score.
    """

    name = "mmr"

    def __init__(
        self, *, exploration_rate: float, text_embeddings: np.ndarray, n_candidates: int = 200
    ) -> None:
        super().__init__(exploration_rate=exploration_rate)
        if n_candidates < 1:
            raise ValueError(f"n_candidates must be at least 1, got {n_candidates}")
        self.embeddings = normalize_rows(text_embeddings)
        self.n_candidates = int(n_candidates)

    def _walk(self, scores: np.ndarray, excluded: np.ndarray, k: int, logged: np.ndarray | None) -> Slate:
        """Fill k slots by MMR; with `logged`, take the logged items and mark where MMR agrees."""
        if scores.shape[0] != self.embeddings.shape[0]:
            raise ValueError(
                f"scores cover {scores.shape[0]} items, text_embeddings {self.embeddings.shape[0]}"
            )
        allowed = allowed_scores(scores, excluded, k)
        n_allowed = int(np.isfinite(allowed).sum())
        candidates = top_k_indices(allowed, max(k, min(self.n_candidates, n_allowed)))
        values = allowed[candidates]
        spread = values[0] - values[-1]
        relevance = (values - values[-1]) / spread if spread > 0 else np.ones(candidates.size)
        weight = 1.0 - self.exploration_rate
        vectors = self.embeddings[candidates]
        max_similarity = np.zeros(candidates.size)  # the penalty of an empty slate
        available = np.ones(candidates.size, dtype=bool)
        items = np.empty(k, dtype=np.int64)
        propensities = np.ones(k)
        explored = np.empty(k, dtype=bool)
        for slot in range(k):
            marginal = np.where(available, weight * relevance - (1.0 - weight) * max_similarity, -np.inf)
            pick = int(np.argmax(marginal))
            item = int(candidates[pick]) if logged is None else int(logged[slot])
            propensities[slot] = float(item == int(candidates[pick]))
            explored[slot] = item != int(candidates[np.argmax(available)])  # candidates sorted by score
            items[slot] = item
            available &= candidates != item
            similarity = vectors @ self.embeddings[item]
            max_similarity = np.maximum(max_similarity, similarity) if slot else similarity
        return Slate(items, propensities, explored, candidates[:k])

    def select(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        k: int,
        rng: np.random.Generator,
        state: UserState | None = None,
    ) -> Slate:
        """Serve k items by maximal marginal relevance."""
        return self._walk(scores, excluded, k, logged=None)

    def slate_propensities(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        items: np.ndarray,
        state: UserState | None = None,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """1 where MMR, given the logged earlier slots, picks the logged item, else 0."""
        items = check_logged_slate(items, np.asarray(excluded))
        return self._walk(scores, excluded, items.size, logged=items).propensities
