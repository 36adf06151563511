"""A tiny catalogue, an untrained two-tower bundle and a temporary SQLite MLflow store for registry tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from explorec.config import ModelConfig
from explorec.data.processed import ProcessedDataset
from explorec.policies.spec import PolicySpec
from explorec.serving.bundle import RecommenderBundle, tower_config
from explorec.serving.packaging import bundle_from_parts

N_USERS, N_ITEMS = 12, 40


def tiny_catalogue_dataset(seed: int = 0) -> ProcessedDataset:
    """Return 12 users × 40 items ('m0'..'m39'), 6 time-ordered interactions each, leave-last-out."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(N_USERS):
        pool = np.arange((user % 4) * 10, (user % 4) * 10 + 10)
        for step, item in enumerate(rng.choice(pool, size=6, replace=False)):
            rows.append((user, int(item), 4.0, 1000 * user + step))
    frame = pd.DataFrame(rows, columns=["user_idx", "item_idx", "rating", "timestamp"])
    rank = frame.groupby("user_idx").cumcount(ascending=False)
    items = pd.DataFrame(
        {
            "item_idx": np.arange(N_ITEMS),
            "item_id": [f"m{item}" for item in range(N_ITEMS)],
            "title": [f"Movie {item} (1999)" for item in range(N_ITEMS)],
            "genres": ["Drama"] * N_ITEMS,
            "text": [f"movie {item}" for item in range(N_ITEMS)],
            "is_cold": False,
        }
    )
    users = pd.DataFrame({"user_idx": np.arange(N_USERS), "user_id": [f"u{u}" for u in range(N_USERS)]})
    return ProcessedDataset(
        path=Path("tiny"),
        train=frame[rank >= 2].reset_index(drop=True),
        valid=frame[rank == 1].reset_index(drop=True),
        test=frame[rank == 0].reset_index(drop=True),
        items=items,
        users=users,
        manifest={"fingerprint": "tiny-catalogue"},
    )


def tiny_bundle(
    dataset: ProcessedDataset, *, policy: PolicySpec | None = None, seed: int = 0, embedding_dim: int = 8
) -> RecommenderBundle:
    """Return a bundle of untrained (seeded) towers on `dataset`, built without Lightning (fast to import)."""
    import torch

    from explorec.models.towers import ItemTower, UserTower

    torch.manual_seed(seed)
    model_cfg = ModelConfig(embedding_dim=embedding_dim, history_length=5, attention_heads=2)
    tower = tower_config(model_cfg, dataset.n_users)
    user_tower = UserTower(**{key: value for key, value in tower.items() if key != "n_users"})
    item_tower = ItemTower(
        n_items=dataset.n_items,
        embedding_dim=embedding_dim,
        known_items=torch.ones(dataset.n_items, dtype=bool),
    ).eval()
    with torch.no_grad():
        item_vectors = item_tower(torch.arange(dataset.n_items)).numpy()
    return bundle_from_parts(
        dataset=dataset,
        item_vectors=item_vectors,
        user_tower_state=user_tower.state_dict(),
        tower=tower,
        policy=policy or PolicySpec("epsilon_greedy", 0.2),
    )


@pytest.fixture
def dataset() -> ProcessedDataset:
    """Return the tiny catalogue data set."""
    return tiny_catalogue_dataset()


@pytest.fixture
def bundle(dataset: ProcessedDataset) -> RecommenderBundle:
    """Return an untrained ε-greedy bundle on the tiny catalogue."""
    return tiny_bundle(dataset)


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    """Return a fresh SQLite tracking store in the test's tmp folder."""
    return f"sqlite:///{tmp_path / 'mlflow.db'}"
