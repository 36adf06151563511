"""load_dataset keeps one loaded data set per config and inputs, and reloads when either changes."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from explorec.config import ExplorecConfig, compose
from explorec.data import loading
from explorec.data.loading import forget_loaded, load_dataset
from explorec.errors import ConfigError
from tests.unit.data.test_sources import write_ml100k as write_tiny_ml100k


@pytest.fixture(autouse=True)
def fresh_memo() -> Iterator[None]:
    """Start and end every test with nothing loaded."""
    forget_loaded()
    yield
    forget_loaded()


def write_ml100k(folder: Path) -> Path:
    """Write the tiny ML-100K plus three users who rated all four items, so every split has valid and test."""
    write_tiny_ml100k(folder)
    extra = [f"{user}\t{item}\t4\t88125{user}{item:03d}" for user in (4, 5, 6) for item in (1, 2, 3, 4)]
    with (folder / "u.data").open("a") as ratings:
        ratings.write("\n".join(extra) + "\n")
    return folder


def ml100k_config(tmp_path: Path, *overrides: str) -> ExplorecConfig:
    """Return a config reading the tiny ML-100K under tmp_path and writing its tables there."""
    return compose(
        [
            f"data.data_dir={tmp_path}",
            "data.allow_download=false",
            f"paths.processed={tmp_path / 'processed'}",
            "split=random_ratio",
            "split.valid_ratio=0.25",
            "split.test_ratio=0.25",
            *overrides,
        ]
    )


def test_a_second_load_returns_the_same_instance_without_hashing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_ml100k(tmp_path / "ml-100k")
    cfg = ml100k_config(tmp_path)
    first = load_dataset(cfg)
    monkeypatch.setattr(loading, "preprocess", lambda cfg: pytest.fail("the memo should answer"))
    assert load_dataset(cfg) is first
    assert load_dataset(ml100k_config(tmp_path)) is first


def test_changed_config_inputs_or_output_load_anew(tmp_path: Path) -> None:
    folder = write_ml100k(tmp_path / "ml-100k")
    cfg = ml100k_config(tmp_path)
    first = load_dataset(cfg)
    other_split = load_dataset(ml100k_config(tmp_path, "split=leave_last_out"))
    assert other_split is not first and other_split.fingerprint != first.fingerprint
    ratings = (folder / "u.data").read_text().splitlines()
    (folder / "u.data").write_text("\n".join(ratings[:-1]) + "\n")
    fewer = load_dataset(cfg)
    assert fewer.fingerprint != first.fingerprint
    assert len(fewer.train) + len(fewer.valid) + len(fewer.test) == len(ratings) - 1
    shutil.rmtree(fewer.path)
    again = load_dataset(cfg)
    assert again is not fewer and again.fingerprint == fewer.fingerprint and again.path.is_dir()


def test_a_touched_input_with_the_same_bytes_reloads_the_same_data(tmp_path: Path) -> None:
    folder = write_ml100k(tmp_path / "ml-100k")
    cfg = ml100k_config(tmp_path)
    first = load_dataset(cfg)
    stat = (folder / "u.data").stat()
    os.utime(folder / "u.data", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = load_dataset(cfg)
    assert second is not first and second.fingerprint == first.fingerprint


def test_an_unknown_source_fails_with_a_config_error_before_any_file_is_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.name='imaginary'"):
        load_dataset(ml100k_config(tmp_path, "data.name=imaginary"))
