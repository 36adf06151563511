"""The one interface every baseline implements, and the input checks they share."""

from __future__ import annotations

from typing import Protocol, Self, runtime_checkable

import numpy as np
import scipy.sparse as sp

from explorec.errors import CatalogueTooLargeError

ITEM_ITEM_LIMIT_SETTING = "benchmark.item_item_max_items"
"""The setting that bounds the catalogue of the item × item baselines (EASE, ItemKNN)."""


@runtime_checkable
class Recommender(Protocol):
    """A model fitted on a users × items interaction matrix that scores every item for given users."""

    def fit(self, train: sp.csr_matrix) -> Self:
        """Fit on the binary (or count) users × items training matrix and return self."""
        ...

    def score(self, users: np.ndarray) -> np.ndarray:
        """Return dense float scores [len(users), n_items] (higher = better) for the given user indices."""
        ...


class NotFittedError(RuntimeError):
    """A recommender was asked to score before `fit` was called."""


class ItemItemRecommender:
    """A model that scores user u as x_u · M: their training row times a fitted item × item matrix M."""

    def __init__(self) -> None:
        self._train: sp.csr_matrix | None = None
        self._item_item: np.ndarray | sp.csr_matrix | None = None

    def _fitted_item_item(self) -> np.ndarray | sp.csr_matrix:
        """Return M, raising NotFittedError before `fit`."""
        if self._item_item is None:
            raise NotFittedError(f"{type(self).__name__}.fit must be called before use")
        return self._item_item

    def score(self, users: np.ndarray) -> np.ndarray:
        """Return x_u · M for each user u, as a dense float32 array [len(users), n_items]."""
        item_item = self._fitted_item_item()
        train = self._train
        if train is None:
            raise NotFittedError(f"{type(self).__name__}.fit must be called before use")
        scores = train[checked_users(users, train.shape[0])] @ item_item
        return np.asarray(scores.todense() if sp.issparse(scores) else scores, dtype=np.float32)


def as_interactions(train: sp.spmatrix | sp.sparray) -> sp.csr_matrix:
    """Return a canonical float32 CSR copy of a training matrix; reject negative or non-finite values."""
    matrix = sp.csr_matrix(train, dtype=np.float32, copy=True)
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    if matrix.ndim != 2 or min(matrix.shape) == 0:
        raise ValueError(f"train must be a non-empty users × items matrix; got shape {matrix.shape}")
    if not np.isfinite(matrix.data).all() or (matrix.data < 0).any():
        raise ValueError("train must hold finite, non-negative values")
    return matrix


def check_catalogue_size(model: str, n_items: int, max_items: int | None) -> None:
    """Refuse a catalogue above `max_items` (None: no limit) before an item × item structure is built."""
    if max_items is not None and n_items > max_items:
        raise CatalogueTooLargeError(
            f"{model} refuses a catalogue of {n_items:,} items: the limit is {max_items:,} "
            f"({ITEM_ITEM_LIMIT_SETTING}); raise it if the memory allows, or leave {model} out of "
            "benchmark.baselines"
        )


def checked_users(users: np.ndarray, n_users: int) -> np.ndarray:
    """Return `users` as a 1-D int64 array, raising IndexError if any is outside [0, n_users)."""
    indices = np.asarray(users, dtype=np.int64).reshape(-1)
    if indices.size and (indices.min() < 0 or indices.max() >= n_users):
        raise IndexError(f"user indices must lie in [0, {n_users})")
    return indices
