"""The model-ready tables that preprocessing writes, and the loader every later stage reads them with.

A processed folder holds:
- `train.parquet`, `valid.parquet`, `test.parquet`: columns `user_idx` (int32), `item_idx` (int32),
  `rating` (float32), `timestamp` (int64); dense 0-based indices.
- `items.parquet`: `item_idx`, `item_id` (original id, str), `title`, `year` (nullable Int32), `genres`
  ("A|B"), `overview`, `tags`, `text` (encoder input), `has_overview` (bool), `is_cold` (bool; held out
  of train).
- `users.parquet`: `user_idx`, `user_id` (original id, str).
- `manifest.json`: format version, input fingerprints, resolved config, counts per split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

FORMAT_VERSION = 1
SPLIT_NAMES = ("train", "valid", "test")
INTERACTION_COLUMNS = ("user_idx", "item_idx", "rating", "timestamp")


@dataclass(frozen=True)
class ProcessedDataset:
    """The split interactions, item and user tables, and manifest of one preprocessing output."""

    path: Path
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    manifest: dict[str, Any]

    @property
    def n_users(self) -> int:
        """Number of users (rows of every user-item matrix)."""
        return len(self.users)

    @property
    def n_items(self) -> int:
        """Number of items in the catalogue (columns of every user-item matrix)."""
        return len(self.items)

    @property
    def fingerprint(self) -> str:
        """Fingerprint of inputs and config that produced this output."""
        return str(self.manifest["fingerprint"])

    def split(self, name: str) -> pd.DataFrame:
        """Return the interactions of split `name` (train, valid or test)."""
        if name not in SPLIT_NAMES:
            raise KeyError(f"unknown split {name!r}; expected one of {SPLIT_NAMES}")
        return getattr(self, name)

    def matrix(self, *names: str) -> sp.csr_matrix:
        """Return a binary users × items CSR matrix of the union of the named splits."""
        frames = [self.split(name) for name in names]
        frame = pd.concat(frames, ignore_index=True) if frames else self.train.iloc[:0]
        return interactions_to_csr(frame, n_users=self.n_users, n_items=self.n_items)


def interactions_to_csr(frame: pd.DataFrame, *, n_users: int, n_items: int) -> sp.csr_matrix:
    """Return a binary (duplicates collapsed to 1) users × items CSR matrix of an interaction frame."""
    data = np.ones(len(frame), dtype=np.float32)
    matrix = sp.csr_matrix(
        (data, (frame["user_idx"].to_numpy(), frame["item_idx"].to_numpy())), shape=(n_users, n_items)
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def load_processed(path: str | Path) -> ProcessedDataset:
    """Load a processed folder written by `explorec preprocess`."""
    folder = Path(path)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{folder} is not a processed data folder (no manifest.json)")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{manifest_path}: format_version {manifest.get('format_version')} != {FORMAT_VERSION}"
        )
    tables = {name: pd.read_parquet(folder / f"{name}.parquet") for name in (*SPLIT_NAMES, "items", "users")}
    return ProcessedDataset(path=folder, manifest=manifest, **tables)
