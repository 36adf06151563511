"""Exact full-ranking evaluation over the whole catalogue, and the top-K helper it is built on.

Protocol: every user with at least one target item is evaluated (optionally only a given subset). The model
scores every item of the catalogue; the items in the user's `exclude` row (train items; for the test split
also the validation items) are set to -inf; the top max(ks) items are taken and compared with the user's
`targets` row. Nothing is sampled.

Tie-breaking is deterministic: among equal scores the lower item index ranks first (also across the K-th
position: the whole top K is exactly the first K items of a stable descending sort of the scores).
Items scored -inf (excluded, or so scored by the model) can fill the list only when fewer than K items
remain, and they never count as hits; a K larger than the catalogue leaves empty slots that count as misses.
A target that is also excluded is unreachable but still counts in |relevant| (the metrics' denominators);
preprocessing should not produce such overlaps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp

from explorec.evaluation.ranking import RANKING_METRICS, hit_matrix, mean_over_users

ScoreUsers = Callable[[np.ndarray], np.ndarray]
"""Maps user indices [n] to a dense float score array [n, n_items] (higher = better)."""


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
    score_users: ScoreUsers,
    *,
    targets: sp.csr_matrix,
    exclude: sp.csr_matrix,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 1024,
    users: np.ndarray | None = None,
) -> dict[str, float]:
    """Return mean Recall/NDCG/HitRate/MRR at each K (keys like "ndcg@10") and "n_users" by full ranking."""
    evaluated, per_user = full_ranking_per_user(
        score_users, targets=targets, exclude=exclude, ks=ks, batch_size=batch_size, users=users
    )
    results = {key: mean_over_users(values) for key, values in per_user.items()}
    results["n_users"] = float(evaluated.size)
    return results


def full_ranking_per_user(
    score_users: ScoreUsers,
    *,
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
        batch_values = _evaluate_batch(score_users, batch, targets=targets, exclude=exclude, ks=ks)
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
    score_users: ScoreUsers,
    batch: np.ndarray,
    *,
    targets: sp.csr_matrix,
    exclude: sp.csr_matrix,
    ks: Sequence[int],
) -> dict[str, np.ndarray]:
    """Return the per-user metric values of one batch of users, keyed like "ndcg@10"."""
    scores = np.asarray(score_users(batch))
    expected = (batch.size, targets.shape[1])
    if scores.shape != expected:
        raise ValueError(f"score_users returned shape {scores.shape}; expected {expected}")
    masked = mask_excluded(scores, exclude[batch])
    ranked = top_k_items(masked, max(ks))
    batch_targets = targets[batch]
    hits = hit_matrix(ranked=ranked, relevant=batch_targets)
    hits &= np.take_along_axis(masked, ranked, axis=1) > -np.inf
    hits = np.pad(hits, ((0, 0), (0, max(ks) - hits.shape[1])))  # K > catalogue: empty slots are misses
    n_relevant = np.diff(batch_targets.indptr)
    return {
        f"{name}@{k}": metric(hits=hits, n_relevant=n_relevant, k=k)
        for k in ks
        for name, metric in RANKING_METRICS.items()
    }
