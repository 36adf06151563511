"""A tiny synthetic processed data set for the two-tower tests (built in memory, no files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from explorec.data.processed import ProcessedDataset

N_USERS, N_ITEMS = 24, 30
GENRES = ("Action", "Comedy", "Drama")


def tiny_dataset(seed: int = 0) -> ProcessedDataset:
    """Return 24 users × 30 items with 8 time-ordered interactions each, split leave-last-out."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(N_USERS):
        taste = user % 3
        pool = np.arange(taste * 10, taste * 10 + 10)
        for step, item in enumerate(rng.choice(pool, size=8, replace=False)):
            rows.append((user, int(item), 4.0, 1000 * user + step))
    frame = pd.DataFrame(rows, columns=["user_idx", "item_idx", "rating", "timestamp"])
    rank = frame.groupby("user_idx").cumcount(ascending=False)
    items = pd.DataFrame(
        {
            "item_idx": np.arange(N_ITEMS),
            "text": [f"movie {item} | {GENRES[item // 10]}" for item in range(N_ITEMS)],
            "genres": [GENRES[item // 10] for item in range(N_ITEMS)],
            "is_cold": False,
        }
    )
    users = pd.DataFrame({"user_idx": np.arange(N_USERS), "user_id": [str(u) for u in range(N_USERS)]})
    return ProcessedDataset(
        path=Path("tiny"),
        train=frame[rank >= 2].reset_index(drop=True),
        valid=frame[rank == 1].reset_index(drop=True),
        test=frame[rank == 0].reset_index(drop=True),
        items=items,
        users=users,
        manifest={"fingerprint": "tiny"},
    )


@pytest.fixture
def tiny() -> ProcessedDataset:
    """Return the tiny synthetic data set."""
    return tiny_dataset()


@pytest.fixture
def tiny_text_embeddings() -> np.ndarray:
    """Return unit-norm 16-d fake text embeddings, one per tiny item, similar within a genre."""
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 16))
    vectors = centres[np.arange(N_ITEMS) // 10] + 0.3 * rng.normal(size=(N_ITEMS, 16))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
