"""Bad data through the real preprocessing (real files on disk): each problem is one typed error naming the
file (and the row and column where there is one) and the real problem, and nothing is written — no
processed output and no staging folder left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from explorec.config import compose
from explorec.data.preprocess import preprocess
from explorec.errors import ConfigError, DataValidationError
from tests.flows.conftest import write_tiny_ml100k

FAR_FUTURE = 999_999_999_999  # year 33658


def config(tmp_path: Path, *overrides: str):
    """Return a config reading ml-100k/ under tmp_path/data and writing under tmp_path/processed only."""
    return compose(
        [
            f"data.data_dir={tmp_path / 'data'}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "data.allow_download=false",
            f"paths.processed={tmp_path / 'processed'}",
            *overrides,
        ]
    )


@pytest.fixture
def ratings(tmp_path: Path) -> Path:
    """Write a valid tiny ml-100k/ (12 users, 15 items) and return its u.data."""
    return write_tiny_ml100k(tmp_path / "data" / "ml-100k") / "u.data"


def assert_nothing_written(tmp_path: Path) -> None:
    """No processed tables and no staging folder anywhere under the test's folder."""
    processed = tmp_path / "processed"
    assert not processed.exists() or not any(processed.iterdir()), list(processed.iterdir())
    assert not list(tmp_path.rglob(".staging-*"))


def refused(tmp_path: Path, *overrides: str) -> DataValidationError:
    """Run preprocessing, expect a DataValidationError, check nothing was written; return the error."""
    with pytest.raises(DataValidationError) as raised:
        preprocess(config(tmp_path, *overrides))
    assert "\n" not in str(raised.value)
    assert_nothing_written(tmp_path)
    return raised.value


def test_the_tiny_data_set_itself_is_fine(tmp_path: Path, ratings: Path) -> None:
    """The control: the unbroken files preprocess, with every split non-empty."""
    counts = preprocess(config(tmp_path)).counts
    assert min(counts["train"], counts["valid"], counts["test"]) >= 1


def test_an_empty_ratings_file_is_named_as_empty(tmp_path: Path, ratings: Path) -> None:
    """Not 'no interactions left after rating_threshold': the file, and that it is empty."""
    ratings.write_text("")
    error = refused(tmp_path)
    assert error.file == str(ratings)
    assert str(error) == f"{ratings}: holds no ratings: the file is empty"


def test_a_folder_where_the_ratings_file_should_be(tmp_path: Path, ratings: Path) -> None:
    """Not 'MovieLens 100K was not found ... lacks u.data': the path, and that it is a folder."""
    ratings.unlink()
    ratings.mkdir()
    error = refused(tmp_path)
    assert str(error) == f"{ratings}: is a folder, not a file"


def test_one_line_of_data_cannot_be_split(tmp_path: Path, ratings: Path) -> None:
    """One rating leaves valid and test empty: said before training would fail in Lightning."""
    ratings.write_text(ratings.read_text().splitlines()[0] + "\n")
    error = refused(tmp_path)
    assert error.file == str(ratings)
    assert "too little data to split: 1 interaction(s) of 1 user(s) leave valid and test empty" in str(error)
    assert "leave_last_out needs users with 3 or more interactions" in str(error)


def test_a_split_that_would_leave_validation_empty(tmp_path: Path, ratings: Path) -> None:
    """Two ratings per user: leave_last_out gives each one to test and none to validation."""
    kept: dict[str, int] = {}
    lines = []
    for line in ratings.read_text().splitlines():
        user = line.split("\t")[0]
        if kept.get(user, 0) < 2:
            kept[user] = kept.get(user, 0) + 1
            lines.append(line)
    ratings.write_text("\n".join(lines) + "\n")
    error = refused(tmp_path)
    assert "of 12 user(s) leave valid empty under split=leave_last_out" in str(error)


def test_a_far_future_timestamp_is_refused_with_its_row(tmp_path: Path, ratings: Path) -> None:
    """A timestamp in the year 33658 is an error naming the row and column; a large slack accepts it."""
    lines = ratings.read_text().splitlines()
    user, item, rating, _ = lines[6].split("\t")
    lines[6] = f"{user}\t{item}\t{rating}\t{FAR_FUTURE}"
    ratings.write_text("\n".join(lines) + "\n")
    error = refused(tmp_path)
    assert (error.file, error.row, error.column) == (str(ratings), 7, "timestamp")
    assert f"timestamp {FAR_FUTURE} (year 33658) is in the future" in error.problem
    assert "data.timestamp_slack_s=86400" in error.problem
    accepted = preprocess(config(tmp_path, "data.timestamp_slack_s=1e12"))
    assert accepted.counts["interactions"] == len(lines)


def test_a_timestamp_just_ahead_of_now_is_within_the_default_slack(tmp_path: Path, ratings: Path) -> None:
    """Clock skew of an hour is allowed by the default slack of a day; with no slack it is not."""
    import time

    soon = int(time.time()) + 3600
    lines = ratings.read_text().splitlines()
    user, item, rating, _ = lines[0].split("\t")
    lines[0] = f"{user}\t{item}\t{rating}\t{soon}"
    ratings.write_text("\n".join(lines) + "\n")
    error = refused(tmp_path, "data.timestamp_slack_s=0")
    assert error.row == 1
    assert preprocess(config(tmp_path)).counts["interactions"] == len(lines)


def test_the_timestamp_slack_is_bounds_checked() -> None:
    """A negative or NaN slack is a config error naming the key."""
    with pytest.raises(ConfigError, match=r"data.timestamp_slack_s=-1.0 must be >= 0"):
        compose(["data.timestamp_slack_s=-1"])
    with pytest.raises(ConfigError, match=r"data.timestamp_slack_s=nan must be a finite number"):
        compose(["data.timestamp_slack_s=nan"])


def test_a_threshold_that_keeps_nothing_names_the_file_and_the_setting(tmp_path: Path, ratings: Path) -> None:
    """Every rating is below the threshold: the ratings file and rating_threshold are named."""
    error = refused(tmp_path, "data.rating_threshold=5.5")
    assert error.file == str(ratings)
    assert "rating_threshold=5.5 keeps none of its" in error.problem
