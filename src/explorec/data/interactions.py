"""Interactions in chronological order and the per-user item sequences built from them.

Chronological order is (user_idx, timestamp, item_idx), stable: rows equal on all three keep their order.
Every stage that needs a user's items in time order (splits, training windows, served histories, the
simulator) reads them from here, usually through `ProcessedDataset`, which caches them per process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

CHRONOLOGICAL_KEYS = ["user_idx", "timestamp", "item_idx"]


def chronological(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the rows sorted by user, then time, breaking timestamp ties by item index (index reset)."""
    return frame.sort_values(CHRONOLOGICAL_KEYS, kind="mergesort").reset_index(drop=True)


@dataclass(frozen=True)
class UserSequences:
    """Every user's items in time order, concatenated: user u owns items[offsets[u]:offsets[u + 1]]."""

    items: np.ndarray
    offsets: np.ndarray

    @property
    def n_users(self) -> int:
        """Number of users (including those with an empty sequence)."""
        return len(self.offsets) - 1

    def owners(self) -> np.ndarray:
        """Return the user of every position of `items`."""
        return np.repeat(np.arange(self.n_users), np.diff(self.offsets))

    def of_user(self, user: int) -> np.ndarray:
        """Return the items of one user in time order."""
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def windows(
        self, users: np.ndarray, ends: np.ndarray, length: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return right-aligned items [B, N] before each end position, and the padding mask (True = padding).

        `length` None keeps every earlier item: N is then the longest such history among `users`.
        """
        if length is None:
            length = max(int((ends - self.offsets[users]).max(initial=0)), 1)
        positions = ends[:, None] - length + np.arange(length)[None, :]
        padding = positions < self.offsets[users][:, None]
        items = np.where(padding, 0, self.items[np.clip(positions, 0, max(len(self.items) - 1, 0))])
        return items, padding

    def last_items(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        """Return every user's last `length` items right-aligned [n_users, length], and the padding mask."""
        users = np.arange(self.n_users)
        return self.windows(users, self.offsets[1:], length)


def user_sequences(interactions: pd.DataFrame, n_users: int) -> UserSequences:
    """Return the users' item sequences ordered by (timestamp, item) within each user."""
    return sequences_of_ordered(chronological(interactions), n_users)


def sequences_of_ordered(ordered: pd.DataFrame, n_users: int) -> UserSequences:
    """Return the user sequences of rows already in chronological order."""
    counts = np.bincount(ordered["user_idx"].to_numpy(), minlength=n_users)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return UserSequences(items=ordered["item_idx"].to_numpy(np.int64), offsets=offsets)
