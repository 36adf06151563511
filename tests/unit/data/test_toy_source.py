"""A data source added from outside the package: registering its reader and layout is all it takes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from explorec.config import ExplorecConfig, compose
from explorec.data.download import DatasetLayout
from explorec.data.loading import load_dataset
from explorec.data.preprocess import preprocess
from explorec.data.raw import RawDataset
from explorec.data.sources import DataSource, register_source, unregister_source, validate_data_choices
from explorec.errors import ConfigError

TOY = "toy"
TOY_LAYOUT = DatasetLayout(title="Toy ratings", folder="toy", required=("ratings.tsv",))
N_USERS, N_ITEMS = 4, 5


def read_toy(folder: Path) -> RawDataset:
    """Read the toy source's one file: tab-separated user, item, rating, timestamp; items are untitled."""
    ratings = pd.read_csv(
        folder / "ratings.tsv",
        sep="\t",
        names=["user_id", "item_id", "rating", "timestamp"],
        dtype={"user_id": str, "item_id": str, "rating": "float64", "timestamp": "int64"},
    )
    item_ids = sorted(ratings["item_id"].unique(), key=int)
    items = pd.DataFrame(
        {
            "item_id": item_ids,
            "title": [f"toy {item}" for item in item_ids],
            "year": pd.array([pd.NA] * len(item_ids), dtype="Int32"),
            "genres": "",
            "overview": "",
            "tags": "",
        }
    ).astype({"item_id": "str", "title": "str", "genres": "str", "overview": "str", "tags": "str"})
    return RawDataset(TOY, ratings, items, (folder / "ratings.tsv",), (1.0, 5.0))


@pytest.fixture
def toy_source() -> Iterator[DataSource]:
    """Register the toy source for one test, and remove it afterwards."""
    source = register_source(DataSource(TOY, TOY_LAYOUT, read_toy))
    try:
        yield source
    finally:
        unregister_source(TOY)


@pytest.fixture
def toy_config(tmp_path: Path) -> ExplorecConfig:
    """Write the toy ratings (every user rates every item) and return a config that reads them."""
    folder = tmp_path / "data" / TOY_LAYOUT.folder
    folder.mkdir(parents=True)
    lines = [
        f"{user}\t{item}\t{1 + (user + item) % 5}\t{1000 + 10 * user + item}"
        for user in range(1, N_USERS + 1)
        for item in range(1, N_ITEMS + 1)
    ]
    (folder / "ratings.tsv").write_text("\n".join(lines) + "\n")
    overrides = [
        f"data.name={TOY}",
        f"data.data_dir={tmp_path / 'data'}",
        "data.allow_download=false",
        f"paths.processed={tmp_path / 'processed'}",
        "split=leave_last_out",
    ]
    return compose(overrides)


@pytest.mark.usefixtures("toy_source")
def test_toy_source_is_checked_preprocessed_split_and_loaded(
    toy_config: ExplorecConfig, tmp_path: Path
) -> None:
    validate_data_choices(toy_config)
    result = preprocess(toy_config)
    assert not result.cache_hit
    assert result.output_dir.parent == tmp_path / "processed"
    assert result.counts["users"] == N_USERS and result.counts["items"] == N_ITEMS
    dataset = load_dataset(toy_config)
    assert dataset.manifest["dataset"] == TOY
    assert (len(dataset.train), len(dataset.valid), len(dataset.test)) == (
        N_USERS * (N_ITEMS - 2),
        N_USERS,
        N_USERS,
    )
    assert preprocess(toy_config).cache_hit


@pytest.mark.usefixtures("toy_source")
def test_toy_source_is_offered_in_the_serve_form() -> None:
    from flows.serve import deployments

    for deployment in deployments():
        properties = deployment._parameter_openapi_schema.properties
        assert TOY in properties["dataset"]["enum"], deployment.flow_name


def test_toy_source_is_gone_once_unregistered() -> None:
    with pytest.raises(ConfigError, match=r"data\.name='toy'"):
        validate_data_choices(compose([f"data.name={TOY}"]))
