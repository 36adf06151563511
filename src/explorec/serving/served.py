"""Beyond-accuracy metrics of the slates a candidate would serve to the test users, greedy and exploring.

Every test user (a user with a test interaction) gets one slate of k items from their train + validation
history, with those items excluded — once greedily and once through the candidate's exploration policy
(seeded). The slates are scored with `explorec.evaluation.beyond_accuracy`: catalogue coverage,
distributional coverage, exposure Gini (0 = equal exposure), intra-list diversity (on the text embeddings
when the model has them, else on the item vectors) and novelty; the policy's slates also report the
deviation rate from greedy and the share of explored slots. Keys: `served/greedy/<metric>` and
`served/policy/<metric>`, the names `GatesConfig` reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from explorec.evaluation import beyond_accuracy as ba
from explorec.evaluation.slates import slate_metrics
from explorec.policies.base import Policy, SlateBatch
from explorec.policies.simple import GreedyPolicy
from explorec.policies.slates import join_batches, serve_batch
from explorec.serving.bundle import RecommenderBundle, ScoreCalibration, user_histories
from explorec.serving.recommender import Recommender, scores_for_policy

if TYPE_CHECKING:
    from explorec.data.processed import ProcessedDataset
    from explorec.evaluation.targets import UserSample

EVALUATION_HISTORY = ("train", "valid")


def served_slate_metrics(
    *,
    user_vectors: np.ndarray,
    item_vectors: np.ndarray,
    excluded: sp.csr_matrix,
    policy: Policy,
    k: int = 10,
    seed: int = 0,
    diversity_vectors: np.ndarray | None = None,
    item_popularity: np.ndarray | None = None,
    n_train_users: int | None = None,
    batch_size: int = 1024,
    score_calibration: ScoreCalibration | None = None,
) -> dict[str, float]:
    """Return `served/greedy/*` and `served/policy/*` metrics of slates from user and item vectors.

    With `score_calibration`, a policy with `reward_scale_scores` serves from the calibrated scores, as the
    server does.
    """
    rng = np.random.default_rng(seed)
    batches: dict[str, list[SlateBatch]] = {"greedy": [], "policy": []}
    for start in range(0, user_vectors.shape[0], batch_size):
        rows = slice(start, start + batch_size)
        scores = (user_vectors[rows] @ item_vectors.T).astype(np.float64)
        policy_scores = scores_for_policy(policy, scores, score_calibration)
        for name, chosen, values in (
            ("greedy", GreedyPolicy(exploration_rate=0.0), scores),
            ("policy", policy, policy_scores),
        ):
            batches[name].append(serve_batch(chosen, scores=values, excluded=excluded[rows], k=k, rng=rng))
    vectors = item_vectors if diversity_vectors is None else diversity_vectors
    results: dict[str, float] = {}
    for name, parts in batches.items():
        metrics = _served_metrics(
            join_batches(parts, k=k),
            n_items=item_vectors.shape[0],
            diversity_vectors=vectors,
            item_popularity=item_popularity,
            n_train_users=n_train_users,
        )
        results.update({f"served/{name}/{key}": value for key, value in metrics.items()})
    return results


def _served_metrics(
    slates: SlateBatch,
    *,
    n_items: int,
    diversity_vectors: np.ndarray,
    item_popularity: np.ndarray | None,
    n_train_users: int | None,
) -> dict[str, float]:
    """Return the slates' beyond-accuracy metrics, deviation rate and explored share (and novelty)."""
    metrics = {
        **slate_metrics(slates.items, n_items=n_items, diversity_vectors=diversity_vectors),
        "deviation_rate": slates.deviation_rate,
        "explored_share": float(np.mean(slates.explored)) if slates.explored.size else float("nan"),
    }
    if item_popularity is not None and n_train_users is not None:
        metrics["novelty"] = ba.novelty(
            recommended_items=slates.items, item_popularity=item_popularity, n_users=n_train_users
        )
    return metrics


def evaluation_users(dataset: ProcessedDataset) -> np.ndarray:
    """Return the users with at least one test interaction, in index order."""
    return np.unique(dataset.test["user_idx"].to_numpy())


def train_user_counts(dataset: ProcessedDataset) -> np.ndarray:
    """Return, per item, the number of distinct training users who interacted with it."""
    return np.asarray(dataset.matrix("train").sum(axis=0)).ravel()


def served_metrics_for_bundle(
    bundle: RecommenderBundle,
    dataset: ProcessedDataset,
    *,
    k: int = 10,
    seed: int = 0,
    sample: UserSample | None = None,
) -> dict[str, float]:
    """Return served-slate metrics of a bundle (e.g. rebuilt from logged artifacts) on the test users.

    `sample` (e.g. `evaluation.max_users`): a seeded sample of the test users, the one the test evaluation
    scores; None: every test user.
    """
    recommender = Recommender(bundle)
    users = evaluation_users(dataset)
    chosen = None if sample is None else sample.users(dataset.matrix("test"))
    if chosen is not None:
        users = np.intersect1d(users, chosen)
    _, offsets, items = user_histories(dataset, EVALUATION_HISTORY)
    histories = [items[offsets[user] : offsets[user + 1]] for user in users]
    has_history = np.array([history.size > 0 for history in histories])
    if not has_history.all():
        raise ValueError("every test user needs a train or validation history to be scored")
    user_rows = [int(user) for user in users]
    return served_slate_metrics(
        user_vectors=recommender.user_vectors(histories, user_rows),
        item_vectors=recommender.item_vectors,
        excluded=dataset.matrix(*EVALUATION_HISTORY)[users],
        policy=recommender.policy(None),
        k=k,
        seed=seed,
        diversity_vectors=bundle.text_embeddings,
        item_popularity=train_user_counts(dataset),
        n_train_users=dataset.n_users,
        score_calibration=bundle.score_calibration,
    )
