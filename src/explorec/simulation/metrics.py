"""Per-episode outcomes: expected/realised clicks, regret, early/late CTR, discovery, recall, diversity.

The `offline_*` metrics are the offline view of the same policy: its first-visit slate (served from the
recommender's prior before any feedback) scored against the user's hidden positives, which the recommender
never saw (NDCG@K and Recall@K, binary relevance), and that slate's intra-list diversity and coverage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explorec.evaluation.beyond_accuracy import (
    catalog_coverage,
    exposure_gini,
    hidden_interest_recall,
    intra_list_diversity,
    new_cluster_discovery,
    novelty,
)
from explorec.evaluation.ranking import mean_over_users, ndcg_at_k, recall_at_k
from explorec.simulation.runner import Episode


@dataclass(frozen=True)
class MetricContext:
    """What episode metrics are measured against: histories, hidden items, clusters, popularity, oracle."""

    visible_items: list[np.ndarray]
    hidden_items: list[np.ndarray]
    item_clusters: np.ndarray
    text_embeddings: np.ndarray
    item_popularity: np.ndarray
    n_training_users: int
    oracle_expected_per_user: np.ndarray


def quarter(n_visits: int) -> int:
    """Number of visits in the early (first) and late (last) quarter, at least 1."""
    return max(1, n_visits // 4)


def episode_metrics(*, episode: Episode, context: MetricContext) -> dict[str, float]:
    """All outcome metrics of one episode; per-user quantities are averaged over users."""
    n_users, n_visits, k = episode.items.shape
    n_items = context.item_popularity.size
    q = quarter(n_visits)
    expected_per_user = episode.expected_rewards.sum(axis=(1, 2))
    served = [episode.items[u].ravel() for u in range(n_users)]
    clicked = [episode.items[u][episode.clicks[u]] for u in range(n_users)]
    slates = list(episode.items.reshape(-1, k))
    return {
        "expected_clicks": float(expected_per_user.mean()),
        "realised_clicks": float(episode.clicks.sum(axis=(1, 2)).mean()),
        "regret": float((context.oracle_expected_per_user - expected_per_user).mean()),
        "ctr_early": float(episode.expected_rewards[:, :q].mean()),
        "ctr_late": float(episode.expected_rewards[:, -q:].mean()),
        "realised_ctr_early": float(episode.clicks[:, :q].mean()),
        "realised_ctr_late": float(episode.clicks[:, -q:].mean()),
        "new_clusters_clicked": new_cluster_discovery(
            reached_items=clicked, histories=context.visible_items, item_clusters=context.item_clusters
        ),
        "new_clusters_served": new_cluster_discovery(
            reached_items=served, histories=context.visible_items, item_clusters=context.item_clusters
        ),
        "hidden_recall": hidden_interest_recall(served_items=served, hidden_positives=context.hidden_items),
        "hidden_clicked_recall": hidden_interest_recall(
            served_items=clicked, hidden_positives=context.hidden_items
        ),
        "coverage": catalog_coverage(recommended_items=episode.items, n_items=n_items),
        "gini": exposure_gini(recommended_items=episode.items, n_items=n_items),
        "novelty": novelty(
            recommended_items=episode.items,
            item_popularity=context.item_popularity,
            n_users=context.n_training_users,
        ),
        "ild": intra_list_diversity(recommendation_lists=slates, item_vectors=context.text_embeddings),
        "deviation": float(episode.deviation.mean()),
        **first_visit_metrics(episode=episode, context=context),
    }


def first_visit_metrics(*, episode: Episode, context: MetricContext) -> dict[str, float]:
    """Offline served-slate metrics of the first visit: NDCG/Recall@K vs hidden positives, ILD, coverage."""
    first = episode.items[:, 0, :]
    k = first.shape[1]
    hits = np.stack(
        [np.isin(slate, hidden) for slate, hidden in zip(first, context.hidden_items, strict=True)]
    )
    n_relevant = np.array([np.unique(hidden).size for hidden in context.hidden_items], dtype=np.int64)
    return {
        "offline_ndcg": mean_over_users(ndcg_at_k(hits=hits, n_relevant=n_relevant, k=k)),
        "offline_recall": mean_over_users(recall_at_k(hits=hits, n_relevant=n_relevant, k=k)),
        "offline_ild": intra_list_diversity(
            recommendation_lists=list(first), item_vectors=context.text_embeddings
        ),
        "offline_coverage": catalog_coverage(recommended_items=first, n_items=context.item_popularity.size),
        "offline_deviation": float(episode.deviation[0]),
    }


def cumulative_curves(*, episode: Episode, oracle_expected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cumulative expected clicks, cumulative regret) per visit, averaged over users."""
    per_visit = episode.expected_rewards.sum(axis=2).mean(axis=0)
    oracle_per_visit = oracle_expected.sum(axis=2).mean(axis=0)
    return np.cumsum(per_visit), np.cumsum(oracle_per_visit - per_visit)


def break_even_visit(lift: np.ndarray) -> float:
    """First visit (1-based) after which the cumulative lift stays > 0 through the horizon; NaN if never."""
    positive = np.asarray(lift) > 0
    if not positive[-1]:
        return float("nan")
    failing = np.flatnonzero(~positive)
    return float(failing[-1] + 2) if failing.size else 1.0
