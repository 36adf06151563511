"""What every data-source reader returns: validated raw interactions and item metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

# interactions: user_id (str), item_id (str), rating (float64), timestamp (int64, unix seconds)
INTERACTION_COLUMNS = ("user_id", "item_id", "rating", "timestamp")
# items: item_id (str), title (str), year (Int32, nullable), genres (str, "A|B"), overview (str, may be ""),
# tags (str, "t1|t2", may be "")
ITEM_COLUMNS = ("item_id", "title", "year", "genres", "overview", "tags")


@dataclass(frozen=True)
class RawDataset:
    """One source data set after reading and validation, before any preprocessing.

    `fixed_test` is set only where the source ships its own test set (Coat's uniformly random ratings);
    it has the interaction columns. `files` lists every input file read, for the fingerprint.
    """

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    files: tuple[Path, ...]
    rating_range: tuple[float, float]
    fixed_test: pd.DataFrame | None = None
    notes: dict[str, int] = field(default_factory=dict)
