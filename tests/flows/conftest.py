"""Flow tests run against Prefect's test harness (a temporary local API and database)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness

GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
          "War", "Western"]  # fmt: skip


TINY_SYNTHETIC = [
    "data=synthetic",
    "data.synthetic.n_users=60",
    "data.synthetic.n_items=40",
    "data.synthetic.n_interactions=1000",
    "encoder=none",
    "model.history_length=10",
    "trainer.batch_size=128",
    "trainer.enable_progress_bar=false",
]
"""Overrides of a tiny synthetic run (seconds to train); add the epoch budget and embedding size."""


@pytest.fixture(scope="session", autouse=True)
def prefect_api() -> Iterator[None]:
    """Start one Prefect test API for the whole session."""
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def tiny_ml100k(tmp_path: Path) -> Path:
    """Return a data folder holding a tiny MovieLens-100K-format `ml-100k/` (12 users, 15 items)."""
    write_tiny_ml100k(tmp_path / "data" / "ml-100k")
    return tmp_path / "data"


def write_tiny_ml100k(folder: Path, *, n_users: int = 12, n_items: int = 15) -> Path:
    """Write a small MovieLens-100K-format data set (u.data, u.item, u.genre) and return its folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.genre").write_text("".join(f"{name}|{index}\n" for index, name in enumerate(GENRES)))
    item_lines = []
    for item in range(1, n_items + 1):
        flags = ["0"] * len(GENRES)
        flags[1 + item % 5] = "1"
        title = f"Film {item} ({1990 + item % 9})"
        item_lines.append(
            f"{item}|{title}|01-Jan-{1990 + item % 9}||http://example.org/{item}|" + "|".join(flags)
        )
    (folder / "u.item").write_bytes(("\n".join(item_lines) + "\n").encode("latin-1"))
    rating_lines = [
        f"{user}\t{item}\t{1 + (user * item) % 5}\t{880000000 + user * 1000 + item}"
        for user in range(1, n_users + 1)
        for item in range(1, n_items + 1)
        if (user + item) % 3 != 0
    ]
    (folder / "u.data").write_text("\n".join(rating_lines) + "\n")
    return folder


@pytest.fixture
def open_gates() -> list[str]:
    """Return overrides that open every accuracy and diversity gate: zero floors, full champion tolerances."""
    return [
        "gates.ndcg_at_10.threshold=0.0",
        "gates.recall_at_20.threshold=0.0",
        "gates.intra_list_diversity.threshold=0.0",
        "gates.catalog_coverage.threshold=0.0",
        "gates.exposure_gini.threshold=1.0",  # Gini: lower is better, so 1.0 is the open ceiling
        "gates.ndcg_at_10.tolerance=1.0",
        "gates.recall_at_20.tolerance=1.0",
        "gates.intra_list_diversity.tolerance=1.0",
        "gates.catalog_coverage.tolerance=1.0",
        "gates.exposure_gini.tolerance=1.0",
    ]
