"""The readers on the real data sets under $EXPLOREC_DATA_DIR (skipped when unset): exact counts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from explorec.config import DataConfig
from explorec.data.sources import read_source

pytestmark = pytest.mark.realdata


def read_real(name: str, data_dir: Path) -> tuple[object, float]:
    """Read `name` from the real data folder without downloading; return it and the seconds it took."""
    started = time.perf_counter()
    dataset = read_source(DataConfig(name=name, data_dir=str(data_dir), allow_download=False))
    return dataset, time.perf_counter() - started


def test_ml100k_counts(real_data_dir: Path) -> None:
    """100,000 ratings, 943 users, 1,682 items; latin-1 titles decoded; read + validated quickly."""
    dataset, seconds = read_real("ml100k", real_data_dir)
    interactions, items = dataset.interactions, dataset.items
    assert len(interactions) == 100_000
    assert interactions["user_id"].nunique() == 943
    assert interactions["item_id"].nunique() == 1682 and len(items) == 1682
    assert interactions["rating"].value_counts().sort_index().tolist() == [6110, 11370, 27145, 34174, 21201]
    assert "Misérables, Les (1995)" in set(items["title"])
    assert items["title"].str.contains("é").sum() == 8
    assert items["year"].isna().sum() == 1
    assert seconds < 5.0


def test_ml_latest_small_tmdb_counts(real_data_dir: Path) -> None:
    """100,836 ratings from 610 users; 3,537 movies carry a TMDB overview (DATASET.md: 3,537 and 70,194)."""
    dataset, seconds = read_real("ml_latest_small_tmdb", real_data_dir)
    interactions, items = dataset.interactions, dataset.items
    assert len(interactions) == 100_836
    assert interactions["user_id"].nunique() == 610
    assert interactions["item_id"].nunique() == 9724 and len(items) == 9742
    assert dataset.notes["items_with_overview"] == 3537
    assert abs(dataset.notes["items_with_overview"] - 3537) <= 0.01 * 3537
    assert dataset.notes["ratings_on_items_with_overview"] == 70_194
    assert (items["tags"] != "").sum() > 1000
    assert interactions["rating"].min() == 0.5 and interactions["rating"].max() == 5.0
    assert seconds < 10.0


def test_coat_counts(real_data_dir: Path) -> None:
    """6,960 train and 4,640 test ratings over 290 users x 300 items; 366 cells rated in both."""
    dataset, _ = read_real("coat", real_data_dir)
    assert dataset.fixed_test is not None
    assert len(dataset.interactions) == 6960 and len(dataset.fixed_test) == 4640
    assert dataset.interactions.groupby("user_id").size().eq(24).all()
    assert dataset.fixed_test.groupby("user_id").size().eq(16).all()
    assert dataset.interactions["rating"].value_counts().sort_index().tolist() == [
        1901,
        1437,
        1717,
        1275,
        630,
    ]
    assert len(dataset.items) == 300 and dataset.notes["train_test_overlap"] == 366
    assert dataset.items["genres"].str.contains("jackettype:").all()
