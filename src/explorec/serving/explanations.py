"""Why each slot of a served slate is there, in words a person can read.

- an exploiting slot: the history item it is closest to ("because you liked 'Fargo (1996)'");
- an explored slot whose item falls in an interest cluster none of the recent history touches: "new
  interest: <cluster name>", the cluster named by its two most central titles;
- another explored slot: "uncertain", with the liked item it is closest to and how close;
- a new user: popularity; an item added after training is marked "new item" first.
Interest clusters are k-means clusters of the items' text embeddings (fitted on at most `MAX_FIT_ITEMS`
items, every item labelled by its nearest centroid, items added later too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from explorec.policies.semantic import cluster_names, kmeans, normalize_rows
from explorec.serving.recommender import Recommendation, Recommender

EXPLANATION_WINDOW = 50
"""How many of the latest history items an explanation looks at."""
MAX_FIT_ITEMS = 20_000
N_INTEREST_CLUSTERS = 20


@dataclass(frozen=True)
class InterestClusters:
    """Text clusters of the catalogue: centroids (unit rows) and a name per cluster."""

    centroids: np.ndarray
    names: tuple[str, ...]

    def labels(self, text_embeddings: np.ndarray) -> np.ndarray:
        """The nearest cluster of each text embedding."""
        return np.argmax(normalize_rows(text_embeddings) @ self.centroids.T, axis=1)


def fit_interest_clusters(
    text_embeddings: np.ndarray,
    titles: Sequence[str],
    *,
    n_clusters: int = N_INTEREST_CLUSTERS,
    seed: int = 0,
) -> InterestClusters:
    """k-means on (a seeded sample of) the text embeddings; each named by its two most central titles."""
    rng = np.random.default_rng(seed)
    vectors = normalize_rows(text_embeddings)
    sample = (
        vectors
        if len(vectors) <= MAX_FIT_ITEMS
        else vectors[rng.choice(len(vectors), MAX_FIT_ITEMS, replace=False)]
    )
    centroids, _ = kmeans(vectors=sample, n_clusters=min(n_clusters, len(sample)), rng=rng)
    centroids = normalize_rows(centroids)
    labels = np.argmax(vectors @ centroids.T, axis=1)
    names = cluster_names(text_embeddings=vectors, item_clusters=labels, titles=titles, n_titles=2)
    names += [f"cluster {cluster}" for cluster in range(len(names), centroids.shape[0])]  # empty last ones
    return InterestClusters(centroids, tuple(names))


def explain_slots(
    recommender: Recommender,
    history: np.ndarray,
    answer: Recommendation,
    new: Sequence[bool],
    clusters: InterestClusters | None = None,
) -> list[str]:
    """One reason per slot (see the module's docstring)."""
    if answer.cold_start or history.size == 0:
        reasons = [
            "explored: picked at random (no history yet)" if explored else "popular (no history yet)"
            for explored in answer.explored
        ]
    else:
        indices = np.asarray([recommender.item_index[item] for item in answer.item_ids])
        window = history[-EXPLANATION_WINDOW:]
        similarity = recommender.item_vectors[indices] @ recommender.item_vectors[window].T
        nearest = similarity.argmax(axis=1)
        texts = recommender.bundle.text_embeddings
        new_interest = np.zeros(len(indices), dtype=bool)
        labels = None
        if clusters is not None and texts is not None:
            labels = clusters.labels(texts[np.concatenate([indices, window])])
            new_interest = ~np.isin(labels[: len(indices)], labels[len(indices) :])
        reasons = []
        for slot, explored in enumerate(answer.explored):
            liked = recommender.bundle.titles[int(window[nearest[slot]])]
            if not explored:
                reasons.append(f"because you liked {liked!r}")
            elif new_interest[slot] and labels is not None and clusters is not None:
                reasons.append(f"explored: new interest: {clusters.names[labels[slot]]}")
            else:
                closeness = float(similarity[slot, nearest[slot]])
                reasons.append(
                    f"explored (uncertain): closest to {liked!r} you liked, similarity {closeness:.2f}"
                )
    return [
        f"new item (from its text); {reason}" if is_new else reason
        for reason, is_new in zip(reasons, new, strict=True)
    ]
