"""Maximal marginal relevance re-ranking on text-embedding cosine similarity (deterministic)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from explorec.policies.base import (
    Policy,
    Slate,
    SlateBatch,
    UserState,
    allowed_score_rows,
    allowed_scores,
    check_logged_slate,
    top_k_indices,
    top_k_rows,
)
from explorec.policies.semantic import normalize_rows

SIMILARITY_MATRIX_BYTES = 32 * 2**20
"""Largest item-to-item cosine matrix E·Eᵀ kept in memory (float64); a larger catalogue computes the
cosines of each picked item to its row's candidates only, so memory does not grow with items²."""


class MMRPolicy(Policy):
    """Greedy MMR over the top-M items by score, λ = 1 − exploration_rate; propensity 1 per slot.

    Slot value = λ·relevance(i) − (1 − λ)·max_{j already in the slate} cos(e_i, e_j), relevance = the score
    min-max scaled to [0, 1] over the M candidates, e the L2-normalised text embeddings. λ = 1 is greedy.
    `explored[s]` is True when the slot's item is not the best remaining item by score.
    Cosines come from one cached E·Eᵀ when it fits `similarity_matrix_bytes`, else from the picked item's
    vector against its candidates' (n·M·d per slot); `select` and `select_batch` share the same path.
    """

    name = "mmr"
    uses_text_embeddings = True
    reranks_candidates = True

    def __init__(
        self,
        *,
        exploration_rate: float,
        text_embeddings: np.ndarray,
        n_candidates: int = 200,
        similarity_matrix_bytes: int = SIMILARITY_MATRIX_BYTES,
    ) -> None:
        super().__init__(exploration_rate=exploration_rate)
        if n_candidates < 1:
            raise ValueError(f"n_candidates must be at least 1, got {n_candidates}")
        self.embeddings = normalize_rows(text_embeddings)
        self.n_candidates = int(n_candidates)
        n_items = self.embeddings.shape[0]
        self._keeps_matrix = 8 * n_items * n_items <= similarity_matrix_bytes
        self._matrix: np.ndarray | None = None

    def _similarity_matrix(self) -> np.ndarray:
        """E·Eᵀ, computed once (only for a catalogue whose matrix fits the configured size)."""
        if self._matrix is None:
            self._matrix = self.embeddings @ self.embeddings.T
            self._matrix.setflags(write=False)
        return self._matrix

    def _similarities_to_candidates(
        self, items: np.ndarray, candidates: np.ndarray, candidate_vectors: np.ndarray | None = None
    ) -> np.ndarray:
        """Per row r, cosines of items[r] to candidates[r]: (n,) and (n, M) give (n, M).

        `candidate_vectors` (n, M, d): the candidates' embeddings when the caller gathered them already.
        """
        if self._keeps_matrix:
            return self._similarity_matrix()[items[:, None], candidates]
        if candidate_vectors is None:
            candidate_vectors = self.embeddings[candidates]
        # one (M, d) x (d,) product per row, so a row has the same bits alone or in a batch
        return np.matmul(candidate_vectors, self.embeddings[items][:, :, None])[..., 0]

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
            similarity = self._similarities_to_candidates(np.array([item]), candidates[None, :])[0]
            max_similarity = np.maximum(max_similarity, similarity) if slot else similarity
        return Slate(items, propensities, explored, candidates[:k])

    def select_batch(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        k: int,
        rng: np.random.Generator,
        states: Sequence[UserState | None] | None = None,
    ) -> SlateBatch:
        """Serve every row at once: the same slates and flags as `select` row by row."""
        allowed = allowed_score_rows(scores, excluded, k)
        n_rows, n_items = allowed.shape
        if n_items != self.embeddings.shape[0]:
            raise ValueError(f"scores cover {n_items} items, text_embeddings {self.embeddings.shape[0]}")
        sizes = np.maximum(k, np.minimum(self.n_candidates, np.isfinite(allowed).sum(axis=1)))
        if n_rows == 0 or (sizes != sizes[0]).any():  # rows with different candidate counts: one by one
            return super().select_batch(scores=scores, excluded=excluded, k=k, rng=rng, states=states)
        rows = np.arange(n_rows)
        candidates = top_k_rows(allowed, int(sizes[0]))
        values = np.take_along_axis(allowed, candidates, axis=1)
        spread = values[:, :1] - values[:, -1:]
        scaled = np.divide(values - values[:, -1:], spread, out=np.ones(values.shape), where=spread > 0)
        relevance = np.where(spread > 0, scaled, 1.0)
        weight = 1.0 - self.exploration_rate
        max_similarity = np.zeros(candidates.shape)
        available = np.ones(candidates.shape, dtype=bool)
        items = np.empty((n_rows, k), dtype=np.int64)
        explored = np.empty((n_rows, k), dtype=bool)
        # gathered once per call, not once per slot (n·M·d, independent of the catalogue's size)
        vectors = None if self._keeps_matrix else self.embeddings[candidates]
        for slot in range(k):
            marginal = np.where(available, weight * relevance - (1.0 - weight) * max_similarity, -np.inf)
            item = candidates[rows, np.argmax(marginal, axis=1)]
            explored[:, slot] = item != candidates[rows, np.argmax(available, axis=1)]
            items[:, slot] = item
            if slot == k - 1:
                break  # the last slot's similarities would weigh no later pick
            available &= candidates != item[:, None]
            similarity = self._similarities_to_candidates(item, candidates, vectors)
            max_similarity = np.maximum(max_similarity, similarity) if slot else similarity
        return SlateBatch(items, np.ones((n_rows, k)), explored, candidates[:, :k])

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
