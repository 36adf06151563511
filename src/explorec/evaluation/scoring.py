"""`Scorer`: the one interface of anything that scores users; `ScoreMatrix`: scores computed beforehand.

A scorer returns dense float scores [len(users), n_items] over the whole catalogue (higher = better,
nothing masked) for user indices, from each user's interactions in the named splits of its data set
(`history_splits`, e.g. ("train",) for validation, ("train", "valid") for test). The full-ranking harness,
the evaluation targets, the benchmark and the served-slate metrics all take one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

TRAIN_HISTORY: tuple[str, ...] = ("train",)
"""The history validation users are scored from."""


@runtime_checkable
class Scorer(Protocol):
    """Something that scores every item of the catalogue for given users from their history."""

    def score(self, users: np.ndarray, history_splits: Sequence[str]) -> np.ndarray:
        """Return scores [len(users), n_items] of `users` from their interactions in `history_splits`."""
        ...


@dataclass(frozen=True)
class ScoreMatrix:
    """Scores computed beforehand: row u of `scores` [n_users, n_items] is user u's, from `history_splits`."""

    scores: np.ndarray
    history_splits: tuple[str, ...] = TRAIN_HISTORY

    def score(self, users: np.ndarray, history_splits: Sequence[str]) -> np.ndarray:
        """Return the stored rows of `users`; raise ValueError for a history the scores were not made from."""
        if tuple(history_splits) != self.history_splits:
            raise ValueError(
                f"these scores come from history {self.history_splits}; asked for {tuple(history_splits)}"
            )
        return self.scores[users]
