"""EASE: embarrassingly shallow autoencoder (Steck 2019), a closed-form item-item linear model.

B = argmin ||X − XB||² + λ||B||² subject to diag(B) = 0 has the closed form P = (XᵀX + λI)⁻¹,
B_ij = −P_ij / P_jj for i ≠ j and B_jj = 0, i.e. B = I − P · diag(1 / diag(P)). A user's scores are x_u · B.
The Gram matrix is dense n_items × n_items and inverted in float64 through its Cholesky factor, so this is for
catalogues up to a few tens of thousands of items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self, cast

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from explorec.baselines.base import ItemItemRecommender, as_interactions, check_catalogue_size


@dataclass(frozen=True)
class EASEParams:
    """The L2 penalty λ added to the diagonal of the Gram matrix, and the largest catalogue it may fit.

    Default: best validation NDCG@10 on MovieLens 100K (leave_last_out and random_ratio alike) over
    λ ∈ {10, 50, 100, 200, 300, 500, 750, 1000, 1500, 2500, 5000}; retune it for other data sets.
    `max_items` None sets no limit; the benchmark passes `benchmark.item_item_max_items`.
    """

    l2: float = 300.0
    max_items: int | None = None

    def __post_init__(self) -> None:
        if self.l2 <= 0:
            raise ValueError(f"l2 must be positive; got {self.l2}")


class EASE(ItemItemRecommender):
    """Closed-form item-item regression with a zero diagonal; user scores are x_u · B."""

    def __init__(self, params: EASEParams | None = None) -> None:
        super().__init__()
        self.params = params or EASEParams()

    def fit(self, train: sp.csr_matrix) -> Self:
        """Solve for the item-item weight matrix B from the (binary or weighted) training matrix."""
        check_catalogue_size("ease", train.shape[1], self.params.max_items)
        self._train = as_interactions(train)
        self._item_item = ease_weights(self._train, l2=self.params.l2).astype(np.float32)
        return self

    @property
    def weights(self) -> np.ndarray:
        """The dense item × item weight matrix B (zero diagonal)."""
        return cast(np.ndarray, self._fitted_item_item())


def ease_weights(train: sp.csr_matrix, *, l2: float) -> np.ndarray:
    """Return the float64 EASE weight matrix B = I − P · diag(1/diag(P)), P = (XᵀX + λI)⁻¹."""
    gram = (train.T @ train).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += l2
    factor = scipy.linalg.cho_factor(gram, lower=True, check_finite=False)
    precision = scipy.linalg.cho_solve(factor, np.eye(gram.shape[0]), check_finite=False)
    weights = -precision / np.diag(precision)[None, :]
    weights[np.diag_indices_from(weights)] = 0.0
    return weights
