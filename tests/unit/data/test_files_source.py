"""The generic source `data=files`: your own CSV / Parquet files, columns mapped in config, checked."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from explorec.config import ExplorecConfig, compose
from explorec.data.preprocess import preprocess
from explorec.data.processed import SPLIT_NAMES, load_processed
from explorec.data.sources import read_source, source_names, validate_data_choices
from explorec.errors import ConfigError, DataNotFoundError, DataValidationError

INTERACTIONS = """customer_id,article,when,stars
c1,a1,2024-01-01,5
c1,a2,2024-01-02T10:00:00Z,4
c1,a3,1704250000,3
c2,a1,2024-01-01 08:00:00,2
c2,a3,2024-01-05,5
c2,a4,2024-01-06,1
c3,a2,2024-02-01,4
c3,a4,2024-02-02,4
c3,a1,2024-02-03,4
"""
ITEMS = """article,name,blurb,note,section,colour
a1,Red shirt,"A shirt,
in red.",cotton,tops,red
a2,Blue jeans,Denim.,,bottoms,blue|dark
a3,,,,tops,
a4,Green hat,A hat.,wool,hats|tops,green
a9,Never bought,Nobody bought it.,,hats,
"""
MAPPED = [
    "data.columns.user=customer_id",
    "data.columns.item=article",
    "data.columns.timestamp=when",
    "data.columns.rating=stars",
]


def write(folder: Path, name: str, text: str) -> Path:
    """Write a text file into `folder` and return its path."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def files_config(tmp_path: Path, *overrides: str) -> ExplorecConfig:
    """Return a config that reads the files named in `overrides` with the test's own output folder."""
    return compose(["data=files", f"paths.processed={tmp_path / 'processed'}", *overrides])


def read(cfg: ExplorecConfig) -> object:
    """Read the configured `data=files` source."""
    return read_source(cfg.data)


@pytest.fixture
def shop(tmp_path: Path) -> list[str]:
    """Write the small shop's interactions and items files; return the overrides that read them."""
    interactions = write(tmp_path, "clicks.csv", INTERACTIONS)
    items = write(tmp_path, "articles.csv", ITEMS)
    return [
        f"data.interactions={interactions}",
        f"data.items={items}",
        *MAPPED,
        "data.columns.title=name",
        "data.columns.text=[blurb,note]",
        "data.columns.categories=[section,colour]",
    ]


def test_files_is_a_registered_source_and_needs_an_interactions_file(tmp_path: Path) -> None:
    assert "files" in source_names()
    with pytest.raises(ConfigError, match=r"data=files needs data\.interactions"):
        validate_data_choices(files_config(tmp_path))


def test_files_is_offered_in_the_serve_forms() -> None:
    from flows.serve import deployments

    for deployment in deployments():
        assert "files" in deployment._parameter_openapi_schema.properties["dataset"]["enum"]


def test_mapped_columns_are_read_timestamps_parsed_and_item_text_built(
    shop: list[str], tmp_path: Path
) -> None:
    cfg = files_config(tmp_path, *shop)
    result = preprocess(cfg)
    assert result.counts["users"] == 3 and result.counts["items"] == 4  # a9: nobody bought it
    assert result.counts["interactions"] == 9
    dataset = load_processed(result.output_dir)
    text = dict(zip(dataset.items["item_id"], dataset.items["text"], strict=True))
    assert text["a1"] == "Red shirt | tops, red | A shirt, in red. cotton"
    assert text["a2"] == "Blue jeans | bottoms, blue, dark | Denim."
    assert text["a3"] == "item a3 | tops"  # no title: the id stands in, as for sources without titles
    assert text["a4"] == "Green hat | hats, tops, green | A hat. wool"
    assert dataset.items.set_index("item_id").loc["a3", "has_overview"] == False  # noqa: E712
    raw = read(cfg)
    frame = raw.interactions.set_index(["user_id", "item_id"])["timestamp"]
    assert frame[("c1", "a2")] == 1704189600  # 2024-01-02T10:00:00Z
    assert frame[("c1", "a3")] == 1704250000
    assert frame[("c2", "a1")] == 1704096000  # no zone: UTC
    assert raw.rating_range == (1.0, 5.0)
    assert preprocess(cfg).cache_hit


def test_without_items_file_or_rating_every_item_is_titled_by_id_and_counts_one(tmp_path: Path) -> None:
    path = write(tmp_path, "clicks.csv", INTERACTIONS)
    raw = read(files_config(tmp_path, f"data.interactions={path}", *MAPPED[:3]))
    assert set(raw.interactions["rating"]) == {1.0}
    assert sorted(raw.items["title"]) == ["item a1", "item a2", "item a3", "item a4"]


def test_parquet_with_typed_columns_reads_like_the_csv(shop: list[str], tmp_path: Path) -> None:
    frame = pd.read_csv(tmp_path / "clicks.csv", dtype=str)
    stamps = pd.to_datetime(
        frame["when"].where(~frame["when"].str.isdigit(), None), format="ISO8601", utc=True
    )
    stamps = stamps.fillna(pd.to_datetime(pd.to_numeric(frame["when"], errors="coerce"), unit="s", utc=True))
    typed = frame.assign(when=stamps.dt.as_unit("ms"), stars=frame["stars"].astype("int64"))
    typed.to_parquet(tmp_path / "clicks.parquet", index=False)
    assert pq.read_schema(tmp_path / "clicks.parquet").field("when").type == pa.timestamp("ms", tz="UTC")
    from_csv = read(files_config(tmp_path, *shop))
    from_parquet = read(files_config(tmp_path, *shop, f"data.interactions={tmp_path / 'clicks.parquet'}"))
    pd.testing.assert_frame_equal(from_csv.interactions, from_parquet.interactions)


@pytest.mark.parametrize(
    ("file", "old", "new", "row", "column", "problem"),
    [
        ("clicks.csv", "c1,a3,1704250000,3", "c1,a3,last week,3", 4, "when", "'last week' is neither"),
        ("clicks.csv", "c2,a3,2024-01-05,5", "c2,a3,2024-01-05,five", 6, "stars", "'five' is not a number"),
        ("clicks.csv", "c3,a2,2024-02-01,4", "c3,,2024-02-01,4", 8, "article", "empty id"),
        ("clicks.csv", "c3,a2,2024-02-01,4", "c3,a7,2024-02-01,4", 8, "article", "id 'a7' is not listed in"),
        (
            "clicks.csv",
            "c3,a1,2024-02-03,4",
            "c3,a4,2024-02-02,5",
            10,
            "customer_id",
            "duplicate (customer_id,",
        ),
        ("clicks.csv", "c2,a4,2024-01-06,1", "c2,a4,1969-12-31,1", 7, "when", "is before 1970"),
        ("clicks.csv", "c2,a4,2024-01-06,1", "c2,a4", 7, None, "expected 4 fields, found 2"),
        (
            "articles.csv",
            "a4,Green hat",
            "a2,Green hat",
            6,
            "article",
            "id 'a2' appears twice (first on line 4)",
        ),
        ("articles.csv", "a3,,,,tops,", "a3,,,,tops,\n\n", 6, "article", "empty id"),
    ],
)
def test_a_broken_value_names_file_row_and_column_and_nothing_is_written(
    shop: list[str], tmp_path: Path, file: str, old: str, new: str, row: int, column: str | None, problem: str
) -> None:
    path = tmp_path / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(DataValidationError) as caught:
        preprocess(files_config(tmp_path, *shop))
    error = caught.value
    assert (error.file, error.row, error.column) == (str(path), row, column)
    assert problem in error.problem
    assert not (tmp_path / "processed").exists()


def test_the_duplicate_message_names_the_first_line(shop: list[str], tmp_path: Path) -> None:
    path = tmp_path / "clicks.csv"
    path.write_text(path.read_text() + "c1,a2,2024-01-02T10:00:00+00:00,1\n")
    with pytest.raises(DataValidationError, match=r"row 11, column 'customer_id': duplicate .* of line 3"):
        read(files_config(tmp_path, *shop))


def test_missing_files_and_columns_are_named(shop: list[str], tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"nope\.csv: no such file \(data\.items\)"):
        preprocess(files_config(tmp_path, *shop, f"data.items={tmp_path / 'nope.csv'}"))
    with pytest.raises(DataValidationError) as caught:
        read(files_config(tmp_path, *shop, "data.columns.title=headline"))
    assert (caught.value.row, caught.value.column) == (1, "headline")
    assert "data.columns.title" in caught.value.problem
    assert not (tmp_path / "processed").exists()


def test_users_file_lists_every_user(shop: list[str], tmp_path: Path) -> None:
    users = write(tmp_path, "customers.csv", "customer_id,age\nc1,30\nc2,41\n")
    with pytest.raises(DataValidationError) as caught:
        read(files_config(tmp_path, *shop, f"data.users={users}"))
    assert (caught.value.row, caught.value.column) == (8, "customer_id")
    assert "id 'c3' is not listed in" in caught.value.problem
    users.write_text("customer_id,age\nc1,30\nc2,41\nc3,25\n")
    assert read(files_config(tmp_path, *shop, f"data.users={users}")).notes["users_listed"] == 3


def test_changing_an_input_file_changes_the_fingerprint(shop: list[str], tmp_path: Path) -> None:
    cfg = files_config(tmp_path, *shop)
    first = preprocess(cfg)
    items = tmp_path / "articles.csv"
    items.write_text(items.read_text().replace("Red shirt", "Crimson shirt"))
    second = preprocess(cfg)
    assert not second.cache_hit and second.fingerprint != first.fingerprint
    assert set(load_processed(second.output_dir).items["title"]) >= {"Crimson shirt"}
    assert set(load_processed(second.output_dir).manifest["inputs"]) == {"articles.csv", "clicks.csv"}


@pytest.mark.realdata
@pytest.mark.parametrize("split", ["leave_last_out", "random_ratio"])
def test_ml100k_exported_to_csv_preprocesses_exactly_like_ml100k(
    real_data_dir: Path, tmp_path: Path, split: str
) -> None:
    """A 600-rating sample of ML-100K, read by its own source and as CSV files: identical tables."""
    sample = tmp_path / "data" / "ml-100k"
    sample.mkdir(parents=True)
    for name in ("u.item", "u.genre"):
        shutil.copy(real_data_dir / "ml-100k" / name, sample / name)
    lines = (real_data_dir / "ml-100k" / "u.data").read_text().splitlines(keepends=True)[:600]
    (sample / "u.data").write_text("".join(lines))
    common = [f"split={split}", "data.allow_download=false"]
    own = compose(
        ["data=ml100k", f"data.data_dir={sample.parent}", f"paths.processed={tmp_path / 'a'}", *common]
    )
    raw = read_source(own.data)
    raw.interactions.to_csv(tmp_path / "ratings.csv", index=False)
    raw.items[["item_id", "title", "year", "genres"]].to_csv(tmp_path / "items.csv", index=False)
    exported = files_config(
        tmp_path,
        f"data.interactions={tmp_path / 'ratings.csv'}",
        f"data.items={tmp_path / 'items.csv'}",
        "data.columns.rating=rating",
        "data.columns.title=title",
        "data.columns.year=year",
        "data.columns.categories=[genres]",
        f"paths.processed={tmp_path / 'b'}",
        *common,
    )
    first, second = (
        load_processed(preprocess(own).output_dir),
        load_processed(preprocess(exported).output_dir),
    )
    assert first.manifest["counts"] == second.manifest["counts"]
    assert first.manifest["counts"]["interactions"] == 600
    for name in (*SPLIT_NAMES, "items", "users"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(second, name), obj=name)


def test_the_files_settings_leave_other_sources_fingerprints_alone() -> None:
    from explorec.data.preprocess import run_fingerprint

    inputs = {"u.data": "0" * 64}
    plain = run_fingerprint(inputs, compose(["data=ml100k"]))
    extra = compose(["data=ml100k", "data.interactions=x.csv", "data.columns.user=u"])
    assert plain == run_fingerprint(inputs, extra)
    files = ["data=files", "data.interactions=x.csv"]
    mapped = compose([*files, "data.columns.user=u"])
    assert run_fingerprint(inputs, compose(files)) != run_fingerprint(inputs, mapped)
