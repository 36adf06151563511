"""Exact full-ranking evaluation over the whole catalogue, and the top-K helper it is built on.

Protocol: every user with at least one target item is evaluated (optionally only a given subset). The model
scores every item of the catalogue; the items in the user's `exclude` row (train items; for the test split
also the validation items) are set to -inf; the top max(ks) items are taken and compared with the user's
`targets` row. Nothing is sampled.

Ties: the metrics are their expectation over a uniformly random order of equally scored items (tie-aware
evaluation, McSherry & Najork, ECIR 2008), computed exactly, so they are deterministic and carry no
information from item indices: a model that scores every item alike gets exactly chance level. (A fixed
tie-break by item index would hand such a model whatever the index order correlates with - in MovieLens,
movieId follows release order and hence popularity.) Within a group of g equal scores that holds h targets,
each of its positions is a hit with probability h/g (Recall, NDCG), and the first hit falls at its j-th
position with probability C(g-j, h-1)/C(g, h) (HitRate, MRR). The ranked list itself (`top_k_items`) is
deterministic: among equal scores the lower item index comes first, also across the K-th position.
Items scored -inf (excluded, or so scored by the model) can fill the list only when fewer than K items
remain, and they never count as hits; a K larger than the catalogue leaves empty slots that count as misses.
A target that is also excluded is unreachable but still counts in |relevant| (the metrics' denominators);
preprocessing should not produce such overlaps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from scipy.special import gammaln

from explorec.evaluation.ranking import RANKING_METRICS, mean_over_users
from explorec.evaluation.scoring import TRAIN_HISTORY, Scorer


def mask_excluded(scores: np.ndarray, exclude_rows: sp.csr_matrix) -> np.ndarray:
    """Return a float copy of `scores` with the nonzero entries of `exclude_rows` set to -inf."""
    if exclude_rows.shape != scores.shape:
        raise ValueError(f"exclude_rows has shape {exclude_rows.shape}; scores have shape {scores.shape}")
    masked = np.array(scores, dtype=np.result_type(scores.dtype, np.float32), copy=True)
    rows = np.repeat(np.arange(exclude_rows.shape[0]), np.diff(exclude_rows.indptr))
    masked[rows, exclude_rows.indices] = -np.inf
    return masked


def top_k_items(scores: np.ndarray, k: int, exclude_rows: sp.csr_matrix | None = None) -> np.ndarray:
    """Return [n_rows, min(k, n_items)] indices of the highest scores, best first, ties → lower index."""
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D [n_rows, n_items]; got shape {scores.shape}")
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    values = scores if exclude_rows is None else mask_excluded(scores, exclude_rows)
    n_rows, n_items = values.shape
    k = min(k, n_items)
    negated = -values
    if k < n_items:
        candidates = np.argpartition(negated, k - 1, axis=1)[:, :k]
    else:
        candidates = np.broadcast_to(np.arange(n_items), (n_rows, n_items)).copy()
    candidate_values = np.take_along_axis(negated, candidates, axis=1)
    order = np.lexsort((candidates, candidate_values), axis=1)
    ranked = np.take_along_axis(candidates, order, axis=1)
    _fix_boundary_ties(ranked, negated, candidate_values)
    return ranked


def _fix_boundary_ties(ranked: np.ndarray, negated: np.ndarray, candidate_values: np.ndarray) -> None:
    """Redo with a stable full sort the rows whose K-th score ties with an item outside the top K."""
    k = ranked.shape[1]
    if k == negated.shape[1]:
        return
    boundary = candidate_values.max(axis=1, keepdims=True)
    tied_outside = (negated == boundary).sum(axis=1) > (candidate_values == boundary).sum(axis=1)
    rows = np.flatnonzero(tied_outside)
    if rows.size:
        ranked[rows] = np.argsort(negated[rows], axis=1, kind="stable")[:, :k]


def full_ranking_evaluate(
    scorer: Scorer,
    *,
    history_splits: Sequence[str] = TRAIN_HISTORY,
    targets: sp.csr_matrix,
    exclude: sp.csr_matrix,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 1024,
    users: np.ndarray | None = None,
) -> dict[str, float]:
    """Return mean Recall/NDCG/HitRate/MRR at each K (keys like "ndcg@10") and "n_users" by full ranking."""
    evaluated, per_user = full_ranking_per_user(
        scorer,
        history_splits=history_splits,
        targets=targets,
        exclude=exclude,
        ks=ks,
        batch_size=batch_size,
        users=users,
    )
    return summarise_per_user(evaluated, per_user)


def summarise_per_user(evaluated: np.ndarray, per_user: dict[str, np.ndarray]) -> dict[str, float]:
    """Return the mean of each per-user metric (NaN-free users) and "n_users"."""
    results = {key: mean_over_users(values) for key, values in per_user.items()}
    results["n_users"] = float(evaluated.size)
    return results


def full_ranking_per_user(
    scorer: Scorer,
    *,
    history_splits: Sequence[str] = TRAIN_HISTORY,
    targets: sp.csr_matrix,
    exclude: sp.csr_matrix,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 1024,
    users: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Return the evaluated users and, per metric key, their values in that order (for paired comparisons)."""
    targets, exclude = _binary_csr(targets), _binary_csr(exclude)
    _check_arguments(targets=targets, exclude=exclude, ks=ks, batch_size=batch_size)
    evaluated = evaluated_users(targets, users)
    if evaluated.size == 0:
        raise ValueError("no user to evaluate: none of the requested users has a target item")
    chunks: dict[str, list[np.ndarray]] = {f"{name}@{k}": [] for k in ks for name in RANKING_METRICS}
    for start in range(0, evaluated.size, batch_size):
        batch = evaluated[start : start + batch_size]
        scores = np.asarray(scorer.score(batch, history_splits))
        batch_values = _evaluate_batch(scores, batch, targets=targets, exclude=exclude, ks=ks)
        for key, values in batch_values.items():
            chunks[key].append(values)
    return evaluated, {key: np.concatenate(parts) for key, parts in chunks.items()}


def _binary_csr(matrix: sp.spmatrix | sp.sparray) -> sp.csr_matrix:
    """Return a canonical CSR copy of `matrix` without stored zeros or duplicate entries."""
    copy = sp.csr_matrix(matrix, copy=True)
    copy.sum_duplicates()
    copy.eliminate_zeros()
    return copy


def evaluated_users(targets: sp.csr_matrix, users: np.ndarray | None = None) -> np.ndarray:
    """Return the sorted unique users (of `users`, default all) that have at least one target item."""
    has_target = np.diff(sp.csr_matrix(targets).indptr) > 0
    if users is None:
        return np.flatnonzero(has_target)
    candidates = np.unique(np.asarray(users, dtype=np.int64))
    if candidates.size and (candidates[0] < 0 or candidates[-1] >= targets.shape[0]):
        raise ValueError(f"users must be indices in [0, {targets.shape[0]})")
    return candidates[has_target[candidates]]


def _check_arguments(
    *, targets: sp.csr_matrix, exclude: sp.csr_matrix, ks: Sequence[int], batch_size: int
) -> None:
    """Raise ValueError on mismatched shapes, empty or non-positive ks, or a non-positive batch size."""
    if targets.shape != exclude.shape:
        raise ValueError(f"targets {targets.shape} and exclude {exclude.shape} must have the same shape")
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive cut-offs; got {tuple(ks)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")


def _evaluate_batch(
    scores: np.ndarray,
    batch: np.ndarray,
    *,
    targets: sp.csr_matrix,
    exclude: sp.csr_matrix,
    ks: Sequence[int],
) -> dict[str, np.ndarray]:
    """Return the per-user metric values of one batch of users from their scores, keyed like "ndcg@10"."""
    expected = (batch.size, targets.shape[1])
    if scores.shape != expected:
        raise ValueError(f"the scorer returned shape {scores.shape}; expected {expected}")
    masked = mask_excluded(scores, exclude[batch])
    batch_targets = targets[batch]
    hit_probability, first_hit_probability = tie_aware_hits(masked, batch_targets.toarray() > 0, max(ks))
    n_relevant = np.diff(batch_targets.indptr)
    return {
        f"{name}@{k}": value
        for k in ks
        for name, value in _expected_metrics(hit_probability, first_hit_probability, n_relevant, k).items()
    }


def tie_aware_hits(masked: np.ndarray, relevant: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Return [n_rows, k] P(rank r + 1 holds a hit) and P(it holds the first hit), over random tie orders.

    `masked`: scores with excluded items at -inf; `relevant`: boolean [n_rows, n_items]. With no ties both
    are 0/1: the hits of the ranking and its first hit. Items at -inf are never hits.
    """
    ranked = top_k_items(masked, k)
    values = np.take_along_axis(masked, ranked, axis=1)
    hits = np.take_along_axis(relevant, ranked, axis=1) & (values > -np.inf)
    start, end = _tie_group_bounds(values)
    hits_before = np.concatenate([np.zeros((len(hits), 1), dtype=np.int64), np.cumsum(hits, axis=1)], axis=1)
    size = end - start + 1
    n_hits = np.take_along_axis(hits_before, end + 1, axis=1) - np.take_along_axis(hits_before, start, axis=1)
    # The group at the cut-off may go on past the list: count its items and targets over the whole row.
    last = values[:, -1:]
    in_last, tied_with_last = values == last, masked == last
    row_hits = (tied_with_last & relevant).sum(axis=1, keepdims=True) * (last > -np.inf)
    size = np.where(in_last, tied_with_last.sum(axis=1, keepdims=True), size)
    n_hits = np.where(in_last, row_hits, n_hits)
    hit_probability = n_hits / size
    position = np.arange(values.shape[1])[None, :] - start + 1
    no_earlier_hit = np.take_along_axis(hits_before, start, axis=1) == 0
    first = np.where(no_earlier_hit, first_hit_probability(size, n_hits, position), 0.0)
    pad = ((0, 0), (0, k - values.shape[1]))  # K larger than the catalogue: empty slots are misses
    return np.pad(hit_probability, pad), np.pad(first, pad)


def _tie_group_bounds(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return, per position of descending rows, the first and last position of its run of equal values."""
    columns = np.broadcast_to(np.arange(values.shape[1]), values.shape)
    opens = np.ones(values.shape, dtype=bool)
    opens[:, 1:] = values[:, 1:] != values[:, :-1]
    closes = np.ones(values.shape, dtype=bool)
    closes[:, :-1] = opens[:, 1:]
    start = np.maximum.accumulate(np.where(opens, columns, 0), axis=1)
    end = np.minimum.accumulate(np.where(closes, columns, values.shape[1])[:, ::-1], axis=1)[:, ::-1]
    return start, end


def first_hit_probability(size: np.ndarray, n_hits: np.ndarray, position: np.ndarray) -> np.ndarray:
    """P(the first of `n_hits` targets among `size` randomly ordered items is at 1-based `position`).

    C(size - position, n_hits - 1) / C(size, n_hits); 0 when there is no target or it cannot be there.
    """
    size, n_hits, position = np.broadcast_arrays(size, n_hits, position)
    possible = (n_hits >= 1) & (position >= 1) & (position <= size - n_hits + 1)
    g = np.where(possible, size, 1).astype(np.float64)
    h = np.where(possible, n_hits, 1).astype(np.float64)
    j = np.where(possible, position, 1).astype(np.float64)
    log_ratio = _log_binomial(g - j, h - 1) - _log_binomial(g, h)
    return np.where(possible, np.exp(log_ratio), 0.0)


def _log_binomial(n: np.ndarray, r: np.ndarray) -> np.ndarray:
    """log C(n, r) for 0 <= r <= n."""
    return gammaln(n + 1) - gammaln(r + 1) - gammaln(n - r + 1)


def _expected_metrics(
    hit_probability: np.ndarray, first_hit: np.ndarray, n_relevant: np.ndarray, k: int
) -> dict[str, np.ndarray]:
    """Return the expected Recall/NDCG/HitRate/MRR@k per user from per-rank hit and first-hit probabilities.

    Same definitions as `explorec.evaluation.ranking` (equal to them when the probabilities are 0/1).
    Row-wise sums rather than matrix products, so that a user's values do not depend on the batch.
    """
    discounts = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    ideal = np.concatenate(([0.0], np.cumsum(discounts)))[np.minimum(n_relevant, k)]
    values = {
        "recall": hit_probability[:, :k].sum(axis=1) / np.maximum(n_relevant, 1),
        "ndcg": (hit_probability[:, :k] * discounts).sum(axis=1) / np.where(ideal > 0, ideal, 1.0),
        "hit": first_hit[:, :k].sum(axis=1),
        "mrr": (first_hit[:, :k] / np.arange(1, k + 1)).sum(axis=1),
    }
    return {name: np.where(n_relevant > 0, values[name], np.nan) for name in RANKING_METRICS}
