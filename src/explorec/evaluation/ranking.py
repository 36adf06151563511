"""Top-K ranking metrics, per user, vectorised over users.

Every metric has one signature, `metric(*, hits, n_relevant, k) -> np.ndarray`:

- `hits`: boolean array [n_users, L] with L >= k; `hits[u, r]` is True when the item that user `u` was
  shown at rank r + 1 is relevant to `u` (build it with `hit_matrix`).
- `n_relevant`: integer array [n_users], the number of relevant items of each user over the whole catalogue
  (not only those in the list), i.e. |relevant(u)|.
- `k`: the cut-off, 1 <= k <= L.

Each returns one float64 value per user. Users with no relevant item (`n_relevant == 0`) get NaN, so that
`mean_over_users` (a NaN-ignoring mean) excludes them from the average rather than counting them as 0.
Relevance is binary throughout.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp


def hit_matrix(*, ranked: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """Return the boolean [n_users, L] matrix telling which ranked items are relevant (row u of `relevant`).

    `relevant` is densified, so pass it a batch of users at a time for large catalogues.
    """
    if ranked.ndim != 2 or ranked.shape[0] != relevant.shape[0]:
        raise ValueError(f"ranked has shape {ranked.shape}; expected [{relevant.shape[0]}, L]")
    dense = np.zeros(relevant.shape, dtype=bool)
    rows = np.repeat(np.arange(relevant.shape[0]), np.diff(relevant.indptr))
    dense[rows, relevant.indices] = True
    return np.take_along_axis(dense, ranked, axis=1)


def _checked_hits(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Validate the common arguments and return the first k columns of `hits` as booleans."""
    if hits.ndim != 2:
        raise ValueError(f"hits must be 2-D [n_users, L]; got shape {hits.shape}")
    if not 1 <= k <= hits.shape[1]:
        raise ValueError(f"k={k} must be between 1 and the list length {hits.shape[1]}")
    if n_relevant.shape != (hits.shape[0],):
        raise ValueError(f"n_relevant has shape {n_relevant.shape}; expected ({hits.shape[0]},)")
    if np.any(n_relevant < 0):
        raise ValueError("n_relevant must be non-negative")
    return hits[:, :k].astype(bool, copy=False)


def _nan_where_no_relevant(values: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """Return `values` as float64 with NaN for users that have no relevant item."""
    out = values.astype(np.float64, copy=True)
    out[n_relevant == 0] = np.nan
    return out


def _discounts(length: int) -> np.ndarray:
    """Return the log2 position discounts 1 / log2(rank + 1) for ranks 1..length."""
    return 1.0 / np.log2(np.arange(2, length + 2, dtype=np.float64))


def recall_at_k(*, hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Recall@K per user: hits in the top K / |relevant| (not / min(|relevant|, K)); NaN if none relevant."""
    top = _checked_hits(hits, n_relevant, k)
    found = top.sum(axis=1, dtype=np.float64)
    return _nan_where_no_relevant(found / np.maximum(n_relevant, 1), n_relevant)


def ndcg_at_k(*, hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """NDCG@K per user: binary gains, 1/log2(rank + 1) discount, ideal DCG over min(|relevant|, K) hits."""
    top = _checked_hits(hits, n_relevant, k)
    discounts = _discounts(k)
    dcg = top @ discounts
    ideal = np.concatenate(([0.0], np.cumsum(discounts)))[np.minimum(n_relevant, k)]
    return _nan_where_no_relevant(dcg / np.where(ideal > 0, ideal, 1.0), n_relevant)


def hit_rate_at_k(*, hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """HitRate@K per user: 1 if at least one relevant item is in the top K, else 0; NaN if none relevant."""
    top = _checked_hits(hits, n_relevant, k)
    return _nan_where_no_relevant(top.any(axis=1), n_relevant)


def mrr_at_k(*, hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """MRR@K per user: 1 / rank of the first relevant item in the top K, 0 if none; NaN if none relevant."""
    top = _checked_hits(hits, n_relevant, k)
    first = top.argmax(axis=1)
    reciprocal = np.where(top.any(axis=1), 1.0 / (first + 1.0), 0.0)
    return _nan_where_no_relevant(reciprocal, n_relevant)


def mean_over_users(values: np.ndarray) -> float:
    """Mean of per-user metric values, excluding NaN (users without relevant items); NaN if all are NaN."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


RANKING_METRICS: dict[str, Callable[..., np.ndarray]] = {
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "hit": hit_rate_at_k,
    "mrr": mrr_at_k,
}
"""Metric name (as used in result keys like "ndcg@10") → per-user metric function."""
