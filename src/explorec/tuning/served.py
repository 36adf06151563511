"""Accuracy and diversity of the slates an exploration policy serves to the validation users.

Protocol: every user with a validation item is served one slate of K items by the policy, from the trained
model's scores over the whole catalogue with the user's train items excluded, with one seeded random
stream (so a trial's numbers are reproducible). NDCG@K is computed on those slates, in the order served,
against the validation items (binary relevance, evaluation/ranking.py). Diversity is intra-list diversity
(1 − mean pairwise cosine of item vectors, e.g. the text encoder's) or catalogue coverage of all slates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from explorec.evaluation.harness import evaluated_users
from explorec.evaluation.ranking import hit_matrix, mean_over_users, ndcg_at_k, recall_at_k
from explorec.evaluation.scoring import TRAIN_HISTORY, Scorer
from explorec.evaluation.slates import slate_metrics
from explorec.policies.base import Policy
from explorec.policies.slates import join_batches, serve_batch


@dataclass(frozen=True)
class ServedSlates:
    """One slate per user: `items[u]` was served to `users[u]`; δ = share of slots off the greedy slate."""

    users: np.ndarray
    items: np.ndarray
    deviation_rate: float


def serve_slates(
    scorer: Scorer,
    *,
    history_splits: Sequence[str] = TRAIN_HISTORY,
    users: np.ndarray,
    exclude: sp.csr_matrix,
    policy: Policy,
    k: int,
    seed: int,
    batch_size: int = 1024,
) -> ServedSlates:
    """Serve one slate of k items to each user with `policy`, never an item of the user's `exclude` row."""
    rng = np.random.default_rng(seed)
    exclude = sp.csr_matrix(exclude)
    batches = []
    for start in range(0, users.size, batch_size):
        batch = users[start : start + batch_size]
        scores = scorer.score(batch, history_splits)
        batches.append(serve_batch(policy, scores=scores, excluded=exclude[batch], k=k, rng=rng))
    served = join_batches(batches, k=k)
    return ServedSlates(
        users=np.asarray(users), items=served.items.astype(np.int64), deviation_rate=served.deviation_rate
    )


def served_ndcg(slates: ServedSlates, targets: sp.csr_matrix, *, k: int) -> float:
    """Mean NDCG@k over users of the served slates, in the order served, against `targets` rows."""
    relevant = sp.csr_matrix(targets)[slates.users]
    hits = hit_matrix(ranked=slates.items, relevant=relevant)
    return mean_over_users(ndcg_at_k(hits=hits, n_relevant=np.diff(relevant.indptr), k=k))


def served_recall(slates: ServedSlates, targets: sp.csr_matrix, *, k: int) -> float:
    """Mean Recall@k over users of the served slates against `targets` rows."""
    relevant = sp.csr_matrix(targets)[slates.users]
    hits = hit_matrix(ranked=slates.items, relevant=relevant)
    return mean_over_users(recall_at_k(hits=hits, n_relevant=np.diff(relevant.indptr), k=k))




def served_metrics(
    scorer: Scorer,
    *,
    history_splits: Sequence[str] = TRAIN_HISTORY,
    targets: sp.csr_matrix,
    exclude: sp.csr_matrix,
    policy: Policy,
    k: int,
    seed: int,
    diversity_vectors: np.ndarray | None,
) -> dict[str, float]:
    """Serve the users that have a target and return ndcg@k, recall@k, ild, coverage and δ of their slates."""
    users = evaluated_users(sp.csr_matrix(targets))
    slates = serve_slates(
        scorer, history_splits=history_splits, users=users, exclude=exclude, policy=policy, k=k, seed=seed
    )
    beyond = slate_metrics(
        slates.items, n_items=sp.csr_matrix(targets).shape[1], diversity_vectors=diversity_vectors
    )
    metrics = {
        f"ndcg@{k}": served_ndcg(slates, targets, k=k),
        f"recall@{k}": served_recall(slates, targets, k=k),
        "coverage": beyond["catalog_coverage"],
        "deviation_rate": slates.deviation_rate,
        "n_users": float(users.size),
    }
    if diversity_vectors is not None:
        metrics["ild"] = beyond["intra_list_diversity"]
    return metrics
