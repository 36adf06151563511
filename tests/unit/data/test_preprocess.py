"""Preprocessing on hand-built raw data: implicit conversion, k-core, id maps, item text, atomic write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from explorec.config import compose
from explorec.data.preprocess import (
    build_item_text,
    build_tables,
    k_core,
    split_counts,
    to_implicit,
    write_atomically,
)
from explorec.data.processed import load_processed
from explorec.data.raw import RawDataset
from explorec.errors import DataValidationError


def _raw(n_users: int = 6, n_items: int = 8) -> RawDataset:
    """Return a small raw data set: every user rates every item once, ratings cycle 1..5."""
    rows = [
        (f"u{user}", str(10 + item), float(1 + (user + item) % 5), 1000 + 10 * item + user)
        for user in range(n_users)
        for item in range(n_items)
    ]
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    items = pd.DataFrame(
        {
            "item_id": [str(10 + item) for item in range(n_items)],
            "title": [f"Movie {item} (199{item})" for item in range(n_items)],
            "year": pd.array([1990 + item for item in range(n_items)], dtype="Int32"),
            "genres": ["Drama|Comedy"] * n_items,
            "overview": ["A story." if item % 2 == 0 else "" for item in range(n_items)],
            "tags": [""] * n_items,
        }
    )
    return RawDataset(name="toy", interactions=interactions, items=items, files=(), rating_range=(1.0, 5.0))


def test_item_text_joins_the_available_parts_and_skips_empty_ones() -> None:
    text = build_item_text(
        title="Heat", year=1995, genres="Action|Crime", overview="A heist.", tags="slow|long|a|b|c|d"
    )
    assert text == "Heat (1995) | Action, Crime | A heist. | slow, long, a, b, c"
    assert build_item_text(title="Heat (1995)", year=1995, genres="", overview="", tags="") == "Heat (1995)"
    assert build_item_text(title="Heat", year=None, genres="Crime", overview="", tags="") == "Heat | Crime"


def test_to_implicit_keeps_ratings_at_or_above_the_threshold() -> None:
    raw = _raw()
    assert len(to_implicit(raw.interactions, None)) == len(raw.interactions)
    kept = to_implicit(raw.interactions, 4.0)
    assert kept["rating"].min() >= 4.0
    assert len(kept) == int((raw.interactions["rating"] >= 4.0).sum())


def test_k_core_removes_until_every_user_and_item_has_k() -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "b", "c"],
            "item_id": ["x", "y", "x", "y", "z"],
            "rating": [1.0] * 5,
            "timestamp": [1, 2, 3, 4, 5],
        }
    )
    core = k_core(frame, 2)
    assert set(core["user_id"]) == {"a", "b"} and set(core["item_id"]) == {"x", "y"}
    assert len(k_core(frame, 3)) == 0
    assert len(k_core(frame, 0)) == 5


def test_build_tables_remaps_ids_densely_and_keeps_the_maps() -> None:
    raw = _raw()
    split, items, users = build_tables(raw, compose(["split=leave_last_out"]))
    assert users["user_id"].tolist() == [f"u{i}" for i in range(6)]
    assert items["item_id"].tolist() == [str(10 + i) for i in range(8)]
    assert items["item_idx"].tolist() == list(range(8))
    every = pd.concat([split.train, split.valid, split.test])
    assert every["user_idx"].between(0, 5).all() and every["item_idx"].between(0, 7).all()
    assert items.loc[0, "text"] == "Movie 0 (1990) | Drama, Comedy | A story."
    assert items["has_overview"].tolist() == [True, False] * 4
    counts = split_counts(split, items, users)
    assert counts == {
        "interactions": 48, "users": 6, "items": 8, "items_with_overview": 4, "cold_items": 0,
        "train": 36, "valid": 6, "test": 6,
    }  # fmt: skip


def test_cold_items_are_drawn_from_items_with_an_overview() -> None:
    raw = _raw(n_users=20, n_items=40)
    split, items, _ = build_tables(raw, compose(["split=cold_items", "split.cold_item_ratio=0.2"]))
    cold = items[items["is_cold"]]
    assert len(cold) == 4 and cold["has_overview"].all()
    assert not set(split.train["item_idx"]) & set(cold["item_idx"])


def test_a_threshold_that_leaves_nothing_is_a_clear_error() -> None:
    expected = r"toy \(generated\): rating_threshold=6\S* keeps none of its 48 ratings"
    with pytest.raises(DataValidationError, match=expected):
        build_tables(_raw(), compose(["data.rating_threshold=6"]))


def test_write_atomically_round_trips_and_leaves_no_staging(tmp_path: Path) -> None:
    raw = _raw()
    split, items, users = build_tables(raw, compose())
    target = tmp_path / "out" / "toy"
    write_atomically(target, split, items, users, {"format_version": 1, "fingerprint": "abc", "counts": {}})
    loaded = load_processed(target)
    assert loaded.n_users == 6 and loaded.n_items == 8 and loaded.fingerprint == "abc"
    assert loaded.train["user_idx"].dtype == np.int32 and loaded.train["timestamp"].dtype == np.int64
    assert loaded.matrix("train").sum() == len(split.train)
    assert sorted(path.name for path in target.parent.iterdir()) == ["toy"]


def test_write_atomically_leaves_nothing_when_a_write_fails(tmp_path: Path) -> None:
    raw = _raw()
    split, items, users = build_tables(raw, compose())
    target = tmp_path / "out" / "toy"
    unserialisable = {"format_version": 1, "fingerprint": object()}
    with pytest.raises(TypeError):
        write_atomically(target, split, items, users, unserialisable)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_staging_left_by_a_dead_writer_is_removed_and_a_live_one_kept(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from explorec.data.preprocess import remove_stale_staging

    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # its pid now names no process (reaped)
    output_dir = tmp_path / "ml100k-leave_last_out-abc"
    dead = tmp_path / f".staging-{output_dir.name}-{finished.pid}-0123abcd"
    live = tmp_path / f".staging-{output_dir.name}-{os.getpid()}-4567cdef"
    other = tmp_path / f".staging-another-output-{finished.pid}-89abcdef"
    for folder in (dead, live, other):
        folder.mkdir()
        (folder / "train.parquet").write_bytes(b"partial")
    assert remove_stale_staging(output_dir) == [dead]
    assert not dead.exists() and live.exists() and other.exists()
