"""What the simulator needs from a recommender: item vectors and raw scores of the simulated users.

`RecommenderOutputs` is the narrow interface: build it from a trained two-tower (`from_scorer` with
`FitResult.score_users` and `FitResult.item_vectors()`) or from the cheap truncated-SVD stand-in
(`stand_in_recommender`), both trained on `SimulationWorld.training` only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse.linalg

from explorec.data.processed import interactions_to_csr
from explorec.policies.semantic import normalize_rows


@dataclass(frozen=True)
class RecommenderOutputs:
    """Item vectors (n_items, d) and raw scores (len(users), n_items) of `users` (higher = better)."""

    item_vectors: np.ndarray
    users: np.ndarray
    scores: np.ndarray
    name: str = "recommender"

    def __post_init__(self) -> None:
        if self.scores.shape != (self.users.size, self.item_vectors.shape[0]):
            raise ValueError(
                f"scores {self.scores.shape} must be (len(users)={self.users.size}, "
                f"n_items={self.item_vectors.shape[0]})"
            )

    def scores_of(self, users: np.ndarray) -> np.ndarray:
        """Score rows of the given users (each must be among `users`)."""
        position = {int(u): row for row, u in enumerate(self.users)}
        missing = [int(u) for u in users if int(u) not in position]
        if missing:
            raise KeyError(f"no recommender scores for users {missing[:5]}")
        return self.scores[[position[int(u)] for u in users]]

    @classmethod
    def from_scorer(
        cls,
        *,
        item_vectors: np.ndarray,
        users: np.ndarray,
        score_users: Callable[[np.ndarray], np.ndarray],
        name: str = "two_tower",
    ) -> RecommenderOutputs:
        """From any scorer, e.g. `lambda u: fit.score_users(u, ("train", "valid", "test"))` of a FitResult."""
        users = np.asarray(users, dtype=np.int64)
        return cls(
            np.asarray(item_vectors, np.float64), users, np.asarray(score_users(users), np.float64), name
        )


def stand_in_recommender(
    *, training: pd.DataFrame, n_users: int, n_items: int, users: np.ndarray, dimension: int = 32
) -> RecommenderOutputs:
    """PureSVD on training positives: item vectors = normalised right singular vectors, scores x_u·V·Vᵀ."""
    matrix = interactions_to_csr(training, n_users=n_users, n_items=n_items).astype(np.float64)
    dimension = min(dimension, min(matrix.shape) - 1)
    _, _, right = scipy.sparse.linalg.svds(matrix, k=dimension, random_state=0)
    item_factors = right.T
    users = np.asarray(users, dtype=np.int64)
    scores = np.asarray(matrix[users] @ item_factors) @ item_factors.T
    return RecommenderOutputs(normalize_rows(item_factors), users, scores, name=f"pure_svd_{dimension}")
