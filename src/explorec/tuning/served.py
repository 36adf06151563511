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
from typing import Any

import numpy as np
import scipy.sparse as sp

from explorec.evaluation.beyond_accuracy import catalog_coverage, intra_list_diversity
from explorec.evaluation.harness import evaluated_users
from explorec.evaluation.ranking import hit_matrix, mean_over_users, ndcg_at_k, recall_at_k
from explorec.evaluation.scoring import TRAIN_HISTORY, Scorer
from explorec.policies.base import Policy
from explorec.policies.factory import POLICIES_ON_ITEM_VECTORS, POLICIES_ON_TEXT_VECTORS


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
    slates, greedy = [], []
    for start in range(0, users.size, batch_size):
        batch = users[start : start + batch_size]
        excluded = exclude[batch].toarray() > 0
        states = [policy.initial_state(history_items=exclude[user].indices) for user in batch]
        served = policy.select_batch(
            scores=scorer.score(batch, history_splits), excluded=excluded, k=k, rng=rng, states=states
        )
        slates.append(served.items)
        greedy.append(served.greedy_items)
    items = np.concatenate(slates) if slates else np.zeros((0, k), dtype=np.int64)
    greedy_items = np.concatenate(greedy) if greedy else items
    deviation = float(np.mean(items != greedy_items)) if items.size else float("nan")
    return ServedSlates(users=np.asarray(users), items=items.astype(np.int64), deviation_rate=deviation)


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


def diversity(name: str, slates: ServedSlates, *, item_vectors: np.ndarray | None, n_items: int) -> float:
    """The diversity objective `name`: `ild` (needs item_vectors) or `coverage` of the served slates."""
    if name == "ild":
        if item_vectors is None:
            raise ValueError("diversity 'ild' needs item vectors (the text encoder's embeddings)")
        return intra_list_diversity(recommendation_lists=list(slates.items), item_vectors=item_vectors)
    if name == "coverage":
        return catalog_coverage(recommended_items=slates.items, n_items=n_items)
    raise ValueError(f"unknown diversity objective {name!r}; expected 'ild' or 'coverage'")


def policy_parameters(
    name: str, *, item_vectors: np.ndarray, text_vectors: np.ndarray | None
) -> dict[str, Any]:
    """Return the keyword arguments `build_policy(name, ...)` needs beyond the exploration rate."""
    params: dict[str, Any] = {}
    if name in POLICIES_ON_ITEM_VECTORS:
        params["item_vectors"] = item_vectors
    if name in POLICIES_ON_TEXT_VECTORS:
        if text_vectors is None:
            raise ValueError(f"policy {name!r} needs text embeddings")
        params["text_embeddings"] = text_vectors
    return params


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
    n_items = sp.csr_matrix(targets).shape[1]
    metrics = {
        f"ndcg@{k}": served_ndcg(slates, targets, k=k),
        f"recall@{k}": served_recall(slates, targets, k=k),
        "coverage": diversity("coverage", slates, item_vectors=None, n_items=n_items),
        "deviation_rate": slates.deviation_rate,
        "n_users": float(users.size),
    }
    if diversity_vectors is not None:
        metrics["ild"] = diversity("ild", slates, item_vectors=diversity_vectors, n_items=n_items)
    return metrics
