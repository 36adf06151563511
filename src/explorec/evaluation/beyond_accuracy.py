"""Beyond-accuracy metrics of what was recommended: coverage, exposure, novelty, diversity, discovery.

Conventions shared by every function here:
- Item ids are dense 0-based indices into the catalogue (`n_items` items; row i of any item-vector matrix).
- `recommended_items` is every recommendation that was made, as one array of ids of any shape or a sequence
  of per-list arrays; each appearance counts as one exposure.
- Per-user metrics take sequences aligned by user (element u belongs to user u) and average over users
  (macro average) that the metric is defined for; when it is defined for none they return NaN.
- Cosine similarities use L2-normalised item vectors (e.g. the text encoder's embeddings).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ItemIds = np.ndarray | Sequence[np.ndarray]


def _flatten(recommended_items: ItemIds) -> np.ndarray:
    """All item ids as one flat int array."""
    if isinstance(recommended_items, np.ndarray):
        return recommended_items.astype(np.int64).ravel()
    arrays = [np.asarray(items, dtype=np.int64).ravel() for items in recommended_items]
    return np.concatenate(arrays) if arrays else np.empty(0, dtype=np.int64)


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def exposure_counts(*, recommended_items: ItemIds, n_items: int) -> np.ndarray:
    """Number of times each of the n_items items was recommended (length n_items)."""
    items = _flatten(recommended_items)
    if items.size and (items.min() < 0 or items.max() >= n_items):
        raise ValueError(f"item ids must lie in [0, {n_items}), got [{items.min()}, {items.max()}]")
    return np.bincount(items, minlength=n_items)


def catalog_coverage(*, recommended_items: ItemIds, n_items: int) -> float:
    """Share of the catalogue recommended at least once: |{i : exposure_i > 0}| / n_items."""
    counts = exposure_counts(recommended_items=recommended_items, n_items=n_items)
    return float(np.count_nonzero(counts) / n_items)


def distributional_coverage(*, recommended_items: ItemIds, n_items: int) -> float:
    """Normalised exposure entropy −Σ p_i log2 p_i / log2(n_items): 1 = uniform over all items, 0 = one item.

    p_i = exposure_i / total exposure over all n_items items (n_items ≥ 2); NaN when nothing was recommended.
    """
    if n_items < 2:
        raise ValueError(f"distributional_coverage needs n_items >= 2, got {n_items}")
    counts = exposure_counts(recommended_items=recommended_items, n_items=n_items)
    total = counts.sum()
    if total == 0:
        return float("nan")
    shares = counts[counts > 0] / total
    return float(-(shares * np.log2(shares)).sum() / np.log2(n_items))


def exposure_gini(*, recommended_items: ItemIds, n_items: int) -> float:
    """Gini of exposure over all n_items items: 0 = equal exposure, 1 = all exposure on one item.

    With exposures sorted ascending c_(1) ≤ … ≤ c_(n), n = n_items (never-recommended items count as 0):
    G = Σ_i (2i − n − 1)·c_(i) / ((n − 1)·Σ_i c_(i)), the sample Gini scaled by n/(n − 1) so the maximum is 1.
    NaN when nothing was recommended; n_items ≥ 2.
    """
    if n_items < 2:
        raise ValueError(f"exposure_gini needs n_items >= 2, got {n_items}")
    counts = np.sort(exposure_counts(recommended_items=recommended_items, n_items=n_items)).astype(np.float64)
    total = counts.sum()
    if total == 0:
        return float("nan")
    ranks = np.arange(1, n_items + 1)
    return float(((2 * ranks - n_items - 1) * counts).sum() / ((n_items - 1) * total))


def novelty(*, recommended_items: ItemIds, item_popularity: np.ndarray, n_users: int) -> float:
    """Mean self-information −log2(n_i / N) over all recommendations (bits; higher = less known items).

    n_i = item_popularity[i], the number of training users who interacted with item i (items never seen in
    training count as n_i = 1); N = n_users, the number of training users. A recommendation of an item every
    user knows scores 0.
    """
    items = _flatten(recommended_items)
    if items.size == 0:
        return float("nan")
    known_by = np.maximum(np.asarray(item_popularity, dtype=np.float64)[items], 1.0)
    if (known_by > n_users).any():
        raise ValueError(
            "item_popularity exceeds n_users: pass the number of users who interacted with each item"
        )
    return float(np.mean(-np.log2(known_by / n_users)))


ILD_BLOCK_LISTS = 512
"""Lists measured at once by `intra_list_diversity` (bounds the gathered (lists, n, d) vectors)."""


def intra_list_diversity(*, recommendation_lists: Sequence[np.ndarray], item_vectors: np.ndarray) -> float:
    """Mean over lists of 1 − mean pairwise cosine of the list's item vectors (pairs i < j).

    Range [0, 2] (0 = every item identical in direction); lists with fewer than two items are skipped.
    Lists of one length are measured together in blocks: the pairwise sum is ‖Σv‖² − Σ‖v‖².
    """
    unit = _unit_rows(item_vectors)
    by_length: dict[int, list[np.ndarray]] = {}
    for items in recommendation_lists:
        items = np.asarray(items, dtype=np.int64).ravel()
        if items.size >= 2:
            by_length.setdefault(items.size, []).append(items)
    values = [
        _list_diversities(np.stack(lists[start : start + ILD_BLOCK_LISTS]), unit)
        for lists in by_length.values()
        for start in range(0, len(lists), ILD_BLOCK_LISTS)
    ]
    return float(np.concatenate(values).mean()) if values else float("nan")


def _list_diversities(lists: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """1 − mean pairwise cosine of each row of `lists` (m, n), n ≥ 2, from unit item vectors."""
    n = lists.shape[1]
    vectors = unit[lists]
    total = vectors.sum(axis=1)
    pairwise = np.einsum("md,md->m", total, total) - np.einsum("mnd,mnd->m", vectors, vectors)
    return 1.0 - pairwise / (n * (n - 1))


def serendipity(
    *,
    recommendation_lists: Sequence[np.ndarray],
    histories: Sequence[np.ndarray],
    relevant_items: Sequence[np.ndarray],
    item_vectors: np.ndarray,
) -> float:
    """Mean over users of the mean over their recommendations of unexpectedness × relevance.

    unexpectedness(i) = 1 − mean cosine between i and the items of the user's history (1 for an empty
    history), relevance(i) = 1 if i is among the user's `relevant_items` else 0. Range [0, 2] (0 = nothing
    relevant was recommended; 1 = every recommendation relevant and orthogonal to the history).
    Users with an empty list are skipped.
    """
    unit = _unit_rows(item_vectors)
    values = []
    for items, history, relevant in zip(recommendation_lists, histories, relevant_items, strict=True):
        items = np.asarray(items, dtype=np.int64)
        if items.size == 0:
            continue
        history = np.asarray(history, dtype=np.int64)
        if history.size:
            unexpectedness = 1.0 - (unit[items] @ unit[history].T).mean(axis=1)
        else:
            unexpectedness = np.ones(items.size)
        relevance = np.isin(items, np.asarray(relevant, dtype=np.int64))
        values.append(float(np.mean(unexpectedness * relevance)))
    return float(np.mean(values)) if values else float("nan")


def _per_user_pairs(lists: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(user index, item id) of every entry of per-user item lists, as two flat int arrays."""
    arrays = [np.asarray(items, dtype=np.int64).ravel() for items in lists]
    users = np.repeat(np.arange(len(arrays)), [items.size for items in arrays])
    return users, (np.concatenate(arrays) if arrays else np.empty(0, np.int64))


def _cluster_sets(lists: Sequence[np.ndarray], item_clusters: np.ndarray, n_clusters: int) -> np.ndarray:
    """(n_users, n_clusters) booleans: the clusters each user's items fall in (users × clusters only)."""
    users, items = _per_user_pairs(lists)
    sets = np.zeros((len(lists), n_clusters), dtype=bool)
    sets[users, item_clusters[items]] = True
    return sets


def _new_clusters(
    reached_items: Sequence[np.ndarray], histories: Sequence[np.ndarray], item_clusters: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per user, (clusters reached that the history lacks, clusters the history lacks) as count arrays."""
    if len(reached_items) != len(histories):
        raise ValueError(f"{len(reached_items)} reached lists for {len(histories)} histories")
    n_clusters = int(item_clusters.max()) + 1
    seen = _cluster_sets(histories, item_clusters, n_clusters)
    reached = _cluster_sets(reached_items, item_clusters, n_clusters)
    return (reached & ~seen).sum(axis=1), n_clusters - seen.sum(axis=1)


def new_cluster_discovery(
    *, reached_items: Sequence[np.ndarray], histories: Sequence[np.ndarray], item_clusters: np.ndarray
) -> float:
    """Mean over users of the number of distinct clusters their reached items hit that their history did not.

    `reached_items[u]` are what counts as reached (e.g. the user's clicks, or everything served to them);
    `item_clusters[i]` is item i's cluster id (0..C−1, e.g. k-means of the text embeddings).
    """
    new, _ = _new_clusters(reached_items, histories, np.asarray(item_clusters, dtype=np.int64))
    return float(new.mean()) if new.size else float("nan")


def new_cluster_discovery_share(
    *, reached_items: Sequence[np.ndarray], histories: Sequence[np.ndarray], item_clusters: np.ndarray
) -> float:
    """Mean over users of new clusters reached / clusters absent from their history (in [0, 1]).

    Users whose history already covers every cluster are skipped. Arguments as in `new_cluster_discovery`.
    """
    new, unexplored = _new_clusters(reached_items, histories, np.asarray(item_clusters, dtype=np.int64))
    defined = unexplored > 0
    return float((new[defined] / unexplored[defined]).mean()) if defined.any() else float("nan")


def hidden_interest_recall(
    *, served_items: Sequence[np.ndarray], hidden_positives: Sequence[np.ndarray]
) -> float:
    """Mean over users with hidden positives of the share of them that were served at least once."""
    if len(served_items) != len(hidden_positives):
        raise ValueError(f"{len(served_items)} served lists for {len(hidden_positives)} users")
    hidden_users, hidden = _per_user_pairs(hidden_positives)
    served_users, served = _per_user_pairs(served_items)
    if hidden.size == 0:
        return float("nan")
    stride = int(max(hidden.max(), served.max() if served.size else 0)) + 1
    hidden_keys = np.unique(hidden_users * stride + hidden)  # a user's hidden item counted once
    hits = np.isin(hidden_keys, served_users * stride + served)
    users = hidden_keys // stride
    counts = np.bincount(users, minlength=len(hidden_positives))
    found = np.bincount(users, weights=hits, minlength=len(hidden_positives))
    defined = counts > 0
    return float((found[defined] / counts[defined]).mean())
