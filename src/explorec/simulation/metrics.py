"""Per-episode outcomes: expected/realised clicks, regret, early/late CTR, discovery, recall, diversity.

The `offline_*` metrics are the offline view of the same policy: its first-visit slate (served from the
recommender's prior before any feedback) scored against the user's hidden positives, which the recommender
never saw (NDCG@K and Recall@K, binary relevance), and that slate's intra-list diversity and coverage.

Time to a first click ("visits until first click") is a restricted mean: visits from the start (visit 1 =
clicked at the first chance) for those clicked, the horizon plus one for those never clicked. For interest
clusters it is per user (the first click in a cluster new to them); in the churn world also per new item
(from its arrival visit, over every pool user's clicks), beside the new items' share of exposure and clicks.
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
from explorec.simulation.churn import Arrivals
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
    arrivals: Arrivals | None = None


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
        "first_new_cluster_click_visits": visits_until_first_click(
            first_click_visit=first_new_cluster_click(
                items=episode.items,
                clicks=episode.clicks,
                histories=context.visible_items,
                item_clusters=context.item_clusters,
            ),
            start_visit=np.zeros(n_users, np.int64),
            n_visits=n_visits,
        ),
        **first_visit_metrics(episode=episode, context=context),
        **(new_item_metrics(episode=episode, arrivals=context.arrivals) if context.arrivals else {}),
    }


def visits_until_first_click(
    *, first_click_visit: np.ndarray, start_visit: np.ndarray, n_visits: int
) -> float:
    """Restricted mean of visits from the start until the first click (1 = at the start visit).

    first_click_visit / start_visit: 0-based visits per entity (first −1 = never clicked, counted as the
    visits left in the horizon plus one: n_visits − start + 1). NaN when there are no entities.
    """
    first = np.asarray(first_click_visit, np.int64)
    start = np.asarray(start_visit, np.int64)
    if first.size == 0:
        return float("nan")
    if ((first >= 0) & (first < start)).any():
        raise ValueError("a first click lies before its start visit")
    return float(np.where(first >= 0, first - start + 1, n_visits - start + 1).mean())


def first_item_clicks(*, items: np.ndarray, clicks: np.ndarray, n_items: int) -> np.ndarray:
    """Per item, the 0-based visit of its first click by any user (−1 if never); items/clicks (n, T, K)."""
    first = np.full(n_items, -1, np.int64)
    for visit in range(items.shape[1] - 1, -1, -1):  # backwards: the earliest visit writes last
        first[items[:, visit][clicks[:, visit]]] = visit
    return first


def first_new_cluster_click(
    *, items: np.ndarray, clicks: np.ndarray, histories: list[np.ndarray], item_clusters: np.ndarray
) -> np.ndarray:
    """Per user, the 0-based visit of their first click in a cluster not in their history (−1 if never)."""
    n_clusters = int(item_clusters.max()) + 1
    engaged = np.zeros((items.shape[0], n_clusters), dtype=bool)
    for row, history in enumerate(histories):
        engaged[row, item_clusters[np.asarray(history, np.int64)]] = True
    rows = np.arange(items.shape[0])[:, None, None]
    discovered = (clicks & ~engaged[rows, item_clusters[items]]).any(axis=2)  # (n_users, T)
    return np.where(discovered.any(axis=1), np.argmax(discovered, axis=1), -1)


def new_item_metrics(*, episode: Episode, arrivals: Arrivals) -> dict[str, float]:
    """Churn outcomes: new items' share of exposure, their expected and realised clicks per user, how
    many of them were ever clicked and the visits from their arrival until their first click."""
    new_slots = arrivals.new[episode.items]
    new_items = arrivals.new_items
    first = first_item_clicks(items=episode.items, clicks=episode.clicks, n_items=arrivals.new.size)
    return {
        "new_item_exposure_share": float(new_slots.mean()),
        "new_item_expected_clicks": float((episode.expected_rewards * new_slots).sum(axis=(1, 2)).mean()),
        "new_item_clicks": float((episode.clicks & new_slots).sum(axis=(1, 2)).mean()),
        "new_items_clicked_share": float((first[new_items] >= 0).mean()),
        "new_item_first_click_visits": visits_until_first_click(
            first_click_visit=first[new_items],
            start_visit=arrivals.visit[new_items],
            n_visits=episode.items.shape[1],
        ),
    }


def new_items_clicked_by_visit(*, episode: Episode, arrivals: Arrivals) -> np.ndarray:
    """Per visit (T,), the share of all new items that some user has clicked at least once by then."""
    first = first_item_clicks(items=episode.items, clicks=episode.clicks, n_items=arrivals.new.size)
    first_new = first[arrivals.new_items]
    if first_new.size == 0:
        return np.full(episode.items.shape[1], np.nan)
    clicked = first_new[first_new >= 0]
    counts = np.bincount(clicked, minlength=episode.items.shape[1])[: episode.items.shape[1]]
    return np.cumsum(counts) / first_new.size


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
