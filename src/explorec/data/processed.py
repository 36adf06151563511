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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from explorec.data.interactions import UserSequences, chronological, sequences_of_ordered

FORMAT_VERSION = 1
SPLIT_NAMES = ("train", "valid", "test")
INTERACTION_COLUMNS = ("user_idx", "item_idx", "rating", "timestamp")


@dataclass(frozen=True)
class ProcessedDataset:
    """The split interactions, item and user tables, and manifest of one preprocessing output.

    What is derived from the splits (chronological interactions, user sequences, user × item matrices, last-N
    histories) is computed once per combination of splits and cached on the instance; treat the tables
    and what the methods return as read-only.
    """

    path: Path
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    manifest: dict[str, Any]
    _derived: dict[tuple[str, ...], Any] = field(default_factory=dict, init=False, repr=False, compare=False)

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

    def _union(self, names: tuple[str, ...]) -> pd.DataFrame:
        """Return the rows of the named splits, concatenated in the order named."""
        frames = [self.split(name) for name in names]
        return pd.concat(frames, ignore_index=True) if frames else self.train.iloc[:0]

    def interactions(self, *names: str) -> pd.DataFrame:
        """Return the named splits' rows in chronological order (user, time, item; stable), cached."""
        key = ("interactions", *names)
        if key not in self._derived:
            self._derived[key] = chronological(self._union(names))
        return self._derived[key]

    def sequences(self, *names: str) -> UserSequences:
        """Return every user's items of the named splits in chronological order, cached."""
        key = ("sequences", *names)
        if key not in self._derived:
            sequences = sequences_of_ordered(self.interactions(*names), self.n_users)
            read_only(sequences.items, sequences.offsets)
            self._derived[key] = sequences
        return self._derived[key]

    def last_items(self, length: int, *names: str) -> tuple[np.ndarray, np.ndarray]:
        """Return every user's last `length` items of the named splits, right-aligned [n_users, length],
        and the padding mask (True = padding), cached."""
        key = ("last_items", str(length), *names)
        if key not in self._derived:
            self._derived[key] = read_only(*self.sequences(*names).last_items(length))
        return self._derived[key]

    def matrix(self, *names: str) -> sp.csr_matrix:
        """Return a binary users × items CSR matrix of the union of the named splits, cached."""
        key = ("matrix", *names)
        if key not in self._derived:
            matrix = interactions_to_csr(self._union(names), n_users=self.n_users, n_items=self.n_items)
            self._derived[key] = read_only(matrix)
        return self._derived[key]


def read_only(*arrays: Any) -> Any:
    """Mark numpy arrays (or a CSR matrix's arrays) read-only; return the one argument, or all as a tuple.

    Cached values are shared by every caller, so none may change them.
    """
    for array in arrays:
        parts = (array.data, array.indices, array.indptr) if sp.issparse(array) else (array,)
        for part in parts:
            part.flags.writeable = False
    return arrays[0] if len(arrays) == 1 else arrays


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


def items_with_text(items: pd.DataFrame) -> np.ndarray:
    """Item indices with text: those with an overview when the source has any, else a non-empty text."""
    overview = items.get("has_overview")
    with_text = overview if overview is not None and overview.any() else items["text"].str.len() > 0
    return items.loc[with_text, "item_idx"].to_numpy()
