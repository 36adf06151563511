"""The synthetic generator: seeded, sized as configured, power-law popular, clustered, text-recoverable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from explorec.config import SyntheticConfig
from explorec.data.raw import INTERACTION_COLUMNS, ITEM_COLUMNS
from explorec.data.synthetic import THEMES, generate_synthetic


def small_config(**overrides: object) -> SyntheticConfig:
    """Return a small synthetic config (400 users, 300 items, 8,000 interactions, 6 clusters)."""
    values: dict[str, object] = {"n_users": 400, "n_items": 300, "n_interactions": 8000, "n_clusters": 6}
    values.update(overrides)
    return SyntheticConfig(**values)  # type: ignore[arg-type]


def top_decile_share(interactions: pd.DataFrame, n_items: int) -> float:
    """Return the share of interactions held by the 10% most popular items."""
    counts = interactions["item_id"].value_counts().to_numpy()
    return counts[: max(1, n_items // 10)].sum() / len(interactions)


def test_same_seed_gives_identical_frames() -> None:
    """Two runs with one seed produce identical interactions and items."""
    first, second = generate_synthetic(small_config(seed=3)), generate_synthetic(small_config(seed=3))
    pd.testing.assert_frame_equal(first.interactions, second.interactions)
    pd.testing.assert_frame_equal(first.items, second.items)


def test_different_seed_gives_different_frames() -> None:
    """Another seed changes the interactions and the item texts."""
    first, second = generate_synthetic(small_config(seed=1)), generate_synthetic(small_config(seed=2))
    assert not first.interactions.equals(second.interactions)
    assert not first.items["overview"].equals(second.items["overview"])


def test_sizes_columns_and_dtypes() -> None:
    """Exactly n_interactions rows, n_items items, ids in range, documented dtypes."""
    cfg = small_config()
    dataset = generate_synthetic(cfg)
    interactions, items = dataset.interactions, dataset.items
    assert tuple(interactions.columns) == INTERACTION_COLUMNS and tuple(items.columns) == ITEM_COLUMNS
    assert len(interactions) == cfg.n_interactions
    assert len(items) == cfg.n_items and items["item_id"].is_unique
    assert interactions["user_id"].astype(int).between(1, cfg.n_users).all()
    assert set(interactions["item_id"]) <= set(items["item_id"])
    assert pd.api.types.is_string_dtype(interactions["user_id"]) and pd.api.types.is_string_dtype(
        items["title"]
    )
    assert interactions["rating"].dtype == "float64" and interactions["timestamp"].dtype == "int64"
    assert items["year"].dtype == "Int32"
    assert dataset.rating_range == (1.0, 5.0) and dataset.name == "synthetic"


def test_no_duplicate_pairs_ratings_and_increasing_timestamps() -> None:
    """Distinct (user, item) pairs, integer ratings 1–5 using the whole scale, strictly increasing time."""
    interactions = generate_synthetic(small_config()).interactions
    assert not interactions.duplicated(["user_id", "item_id"]).any()
    assert set(interactions["rating"].unique()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert (np.diff(interactions["timestamp"].to_numpy()) > 0).all()


def test_popularity_follows_a_power_law() -> None:
    """The top 10% of items hold over 30% of interactions, far more than with a flat exponent."""
    skewed = generate_synthetic(small_config(popularity_exponent=1.0)).interactions
    flat = generate_synthetic(small_config(popularity_exponent=0.0)).interactions
    assert top_decile_share(skewed, 300) > 0.30
    assert top_decile_share(flat, 300) < 0.25


def test_users_concentrate_on_few_clusters() -> None:
    """A user's favourite cluster takes far more than the uniform 1/n_clusters share of their items."""
    dataset = generate_synthetic(small_config())
    merged = dataset.interactions.merge(dataset.items[["item_id", "genres"]], on="item_id")
    busy = merged.groupby("user_id").filter(lambda rows: len(rows) >= 10)
    top_share = busy.groupby("user_id")["genres"].agg(
        lambda genres: genres.value_counts(normalize=True).iloc[0]
    )
    assert top_share.mean() > 2 / 6


def test_item_text_recovers_the_clusters() -> None:
    """Each description uses only its own cluster's theme words, so bag-of-words recovers every cluster."""
    items = generate_synthetic(small_config()).items
    assert items["genres"].nunique() == 6
    vocabularies = {name: set(words) for name, words in THEMES.items()}
    for overview, cluster in zip(items["overview"], items["genres"], strict=True):
        words = set(overview.rstrip(".").replace(",", "").split())
        overlaps = {name: len(words & vocabulary) for name, vocabulary in vocabularies.items()}
        assert max(overlaps, key=overlaps.__getitem__) == cluster
        assert overlaps[cluster] >= 5
        assert sum(overlaps.values()) == overlaps[cluster]


def test_more_clusters_than_themes_still_have_their_own_words() -> None:
    """Clusters beyond the named themes get their own made-up word families."""
    items = generate_synthetic(small_config(n_clusters=15, n_items=150, n_interactions=2000)).items
    assert items["genres"].nunique() == 15
    topic = items[items["genres"] == "topic14"]
    assert topic["overview"].str.contains("topic14").all()


@pytest.mark.parametrize(
    "overrides",
    [{"n_interactions": 60_000}, {"n_clusters": 0}, {"n_clusters": 400}, {"popularity_exponent": -1.0}],
)
def test_impossible_configs_are_rejected(overrides: dict[str, object]) -> None:
    """Too dense, zero or too many clusters, or a negative exponent fail with ValueError."""
    with pytest.raises(ValueError, match="synthetic"):
        generate_synthetic(small_config(**overrides))
