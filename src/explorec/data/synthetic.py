"""A seeded synthetic data set of any size, with power-law popularity and latent interest clusters.

Each item belongs to one cluster; its description is drawn from that cluster's vocabulary (so a text encoder
can recover the clusters) and its `genres` field names the cluster. Each user prefers a few clusters
(a sparse Dirichlet draw). An interaction picks a user (by activity), a cluster (by the user's preference)
and an item of that cluster (by Zipf-like popularity with the configured exponent); repeated (user, item)
pairs are dropped and redrawn. Ratings 1–5 rise with the user's preference for the item's cluster;
timestamps increase.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from explorec.config import SyntheticConfig
from explorec.data.raw import ITEM_COLUMNS, RawDataset

THEMES: dict[str, tuple[str, ...]] = {
    "space": (
        "galaxy",
        "astronaut",
        "rocket",
        "planet",
        "orbit",
        "starship",
        "alien",
        "comet",
        "nebula",
        "moon",
    ),
    "cooking": ("recipe", "kitchen", "chef", "bread", "spice", "oven", "garlic", "pastry", "soup", "flavor"),
    "war": (
        "soldier",
        "battle",
        "army",
        "trench",
        "general",
        "invasion",
        "tank",
        "regiment",
        "siege",
        "medal",
    ),
    "romance": (
        "love",
        "wedding",
        "kiss",
        "heart",
        "lovers",
        "romance",
        "date",
        "passion",
        "bride",
        "letter",
    ),
    "ocean": ("sea", "ship", "whale", "island", "sailor", "coral", "storm", "harbor", "wave", "diver"),
    "music": ("band", "guitar", "concert", "singer", "song", "drummer", "album", "melody", "piano", "tour"),
    "sports": (
        "team",
        "coach",
        "match",
        "stadium",
        "league",
        "goal",
        "champion",
        "player",
        "season",
        "trophy",
    ),
    "crime": (
        "detective",
        "murder",
        "police",
        "heist",
        "gangster",
        "witness",
        "robbery",
        "prison",
        "clue",
        "gun",
    ),
    "horror": (
        "ghost",
        "haunted",
        "monster",
        "vampire",
        "curse",
        "zombie",
        "demon",
        "blood",
        "scream",
        "crypt",
    ),
    "western": (
        "cowboy",
        "sheriff",
        "saloon",
        "outlaw",
        "ranch",
        "desert",
        "horse",
        "frontier",
        "duel",
        "gold",
    ),
    "school": ("teacher", "student", "classroom", "exam", "campus", "homework", "principal", "prom", "class"),
    "fantasy": ("dragon", "wizard", "castle", "sword", "quest", "elf", "kingdom", "magic", "spell", "knight"),
}
FILLER_WORDS = ("story", "life", "journey", "world", "night", "secret", "friends", "family", "time", "city")
SYNTHETIC_START_TIMESTAMP = 1_000_000_000
USER_PREFERENCE_CONCENTRATION = 0.3
WORDS_PER_DESCRIPTION = 8


def generate_synthetic(cfg: SyntheticConfig) -> RawDataset:
    """Generate a seeded synthetic RawDataset of `cfg.n_interactions` distinct (user, item) ratings."""
    check_synthetic_config(cfg)
    rng = np.random.default_rng(cfg.seed)
    themes = cluster_themes(cfg.n_clusters)
    item_cluster = rng.permutation(np.arange(cfg.n_items) % cfg.n_clusters)
    popularity = zipf_popularity(cfg.n_items, cfg.popularity_exponent, rng)
    preferences = rng.dirichlet(np.full(cfg.n_clusters, USER_PREFERENCE_CONCENTRATION), size=cfg.n_users)
    activity = rng.lognormal(mean=0.0, sigma=1.0, size=cfg.n_users)
    users, items = sample_distinct_pairs(cfg, item_cluster, popularity, preferences, activity, rng)
    ratings = ratings_from_preference(preferences[users, item_cluster[items]], cfg.n_clusters, rng)
    gaps = rng.integers(1, 3600, size=len(users))
    interactions = pd.DataFrame(
        {
            "user_id": pd.Series((users + 1).astype(str), dtype="str"),
            "item_id": pd.Series((items + 1).astype(str), dtype="str"),
            "rating": ratings.astype(np.float64),
            "timestamp": (SYNTHETIC_START_TIMESTAMP + np.cumsum(gaps)).astype(np.int64),
        }
    )
    item_table = synthetic_items(item_cluster, themes, rng)
    notes = {"n_clusters": cfg.n_clusters, "seed": cfg.seed}
    return RawDataset("synthetic", interactions, item_table, (), (1.0, 5.0), notes=notes)


def check_synthetic_config(cfg: SyntheticConfig) -> None:
    """Raise ValueError for sizes that cannot be generated."""
    if min(cfg.n_users, cfg.n_items, cfg.n_clusters) < 1 or cfg.n_interactions < 0:
        raise ValueError("synthetic n_users, n_items and n_clusters must be >= 1 and n_interactions >= 0")
    if cfg.n_clusters > cfg.n_items:
        raise ValueError("synthetic n_clusters cannot exceed n_items")
    if cfg.n_interactions > 0.5 * cfg.n_users * cfg.n_items:
        raise ValueError("synthetic n_interactions must be at most half of n_users * n_items")
    if cfg.popularity_exponent < 0:
        raise ValueError("synthetic popularity_exponent must be >= 0")


def cluster_themes(n_clusters: int) -> list[tuple[str, tuple[str, ...]]]:
    """Return a (name, vocabulary) per cluster: real-word themes first, then made-up word families."""
    named = list(THEMES.items())[:n_clusters]
    for index in range(len(named), n_clusters):
        stem = f"topic{index}"
        named.append((stem, tuple(f"{stem}{suffix}" for suffix in "abcdefghij")))
    return named


def zipf_popularity(n_items: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Return Zipf-like weights rank^-exponent assigned to items in a random order."""
    weights = 1.0 / np.arange(1, n_items + 1, dtype=np.float64) ** exponent
    return weights[rng.permutation(n_items)]


def sample_distinct_pairs(
    cfg: SyntheticConfig,
    item_cluster: np.ndarray,
    popularity: np.ndarray,
    preferences: np.ndarray,
    activity: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw (user, item) pairs until `cfg.n_interactions` distinct ones exist; return them in draw order."""
    cluster_items = [np.flatnonzero(item_cluster == c) for c in range(cfg.n_clusters)]
    cluster_cdf = [np.cumsum(popularity[members]) / popularity[members].sum() for members in cluster_items]
    preference_cdf = np.cumsum(preferences, axis=1)
    user_cdf = np.cumsum(activity) / activity.sum()
    keys = np.empty(0, dtype=np.int64)
    for _ in range(100):
        missing = cfg.n_interactions - len(keys)
        if missing <= 0:
            break
        size = int(missing * 1.3) + 16
        users = np.minimum(np.searchsorted(user_cdf, rng.random(size)), cfg.n_users - 1)
        clusters = draw_clusters(preference_cdf, users, rng)
        items = np.empty(size, dtype=np.int64)
        for c, members in enumerate(cluster_items):
            chosen = clusters == c
            picks = np.searchsorted(cluster_cdf[c], rng.random(int(chosen.sum())))
            items[chosen] = members[np.minimum(picks, len(members) - 1)]
        keys = np.concatenate([keys, users.astype(np.int64) * cfg.n_items + items])
        _, first = np.unique(keys, return_index=True)
        keys = keys[np.sort(first)][: cfg.n_interactions]
    if len(keys) < cfg.n_interactions:
        raise ValueError("synthetic data too dense: could not draw enough distinct (user, item) pairs")
    return keys // cfg.n_items, keys % cfg.n_items


def draw_clusters(preference_cdf: np.ndarray, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw one cluster per entry of `users` from that user's preference, in blocks to bound memory."""
    n_clusters = preference_cdf.shape[1]
    clusters = np.empty(len(users), dtype=np.int64)
    block = max(1, 4_000_000 // n_clusters)
    for start in range(0, len(users), block):
        part = users[start : start + block]
        draws = rng.random(len(part))[:, None]
        clusters[start : start + block] = (preference_cdf[part] < draws).sum(axis=1)
    return np.minimum(clusters, n_clusters - 1)


def ratings_from_preference(preference: np.ndarray, n_clusters: int, rng: np.random.Generator) -> np.ndarray:
    """Map a user's preference for the item's cluster (plus noise) onto ratings 1–5."""
    affinity = np.log(preference * n_clusters + 1e-9) + rng.normal(0.0, 1.0, size=len(preference))
    return np.digitize(affinity, [-2.0, -0.75, 0.25, 1.25]).astype(np.float64) + 1.0


def synthetic_items(
    item_cluster: np.ndarray, themes: list[tuple[str, tuple[str, ...]]], rng: np.random.Generator
) -> pd.DataFrame:
    """Build the item table: title, year, genres (the cluster name), a description in the cluster's words."""
    titles, genres, overviews, tags = [], [], [], []
    for index, cluster in enumerate(item_cluster):
        name, vocabulary = themes[int(cluster)]
        words = rng.choice(vocabulary, size=WORDS_PER_DESCRIPTION, replace=False)
        filler = rng.choice(FILLER_WORDS, size=2, replace=False)
        titles.append(f"The {words[0].title()} {filler[0].title()} {index + 1}")
        genres.append(name)
        overviews.append(
            f"A {filler[1]} about the {words[1]}, the {words[2]} and the {' and '.join(words[3:])}."
        )
        tags.append("|".join(dict.fromkeys(words[:3])))
    frame = pd.DataFrame(
        {
            "item_id": pd.Series([str(i + 1) for i in range(len(item_cluster))], dtype="str"),
            "title": pd.Series(titles, dtype="str"),
            "year": pd.Series(rng.integers(1950, 2021, size=len(item_cluster)), dtype="Int32"),
            "genres": pd.Series(genres, dtype="str"),
            "overview": pd.Series(overviews, dtype="str"),
            "tags": pd.Series(tags, dtype="str"),
        }
    )
    return frame[list(ITEM_COLUMNS)]
