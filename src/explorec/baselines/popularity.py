"""Most-popular baseline: every user gets the items ranked by how many training users interacted with them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np
import scipy.sparse as sp

from explorec.baselines.base import NotFittedError, as_interactions, checked_users


@dataclass(frozen=True)
class PopularityParams:
    """Popularity has no hyperparameters; the class keeps the factory uniform."""


class Popularity:
    """Scores each item by its number of training users (binary interactions), the same for every user."""

    def __init__(self, params: PopularityParams | None = None) -> None:
        self.params = params or PopularityParams()
        self._counts: np.ndarray | None = None
        self._n_users = 0

    def fit(self, train: sp.csr_matrix) -> Self:
        """Count the distinct training users of each item."""
        matrix = as_interactions(train)
        self._counts = np.diff(matrix.tocsc().indptr).astype(np.float32)
        self._n_users = matrix.shape[0]
        return self

    @property
    def item_counts(self) -> np.ndarray:
        """The per-item training user counts (a copy)."""
        if self._counts is None:
            raise NotFittedError("Popularity.fit must be called before use")
        return self._counts.copy()

    def score(self, users: np.ndarray) -> np.ndarray:
        """Return the item counts repeated for each user [len(users), n_items]."""
        counts = self.item_counts
        indices = checked_users(users, self._n_users)
        return np.tile(counts, (indices.size, 1))
