"""What a trained scorer is evaluated on: validation and test targets (and cold-item ones), scored by exact
full ranking over the catalogue through `harness`, with each user's selection metric kept for paired tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from explorec.config import EvaluationConfig
from explorec.data.processed import ProcessedDataset, interactions_to_csr
from explorec.evaluation.harness import evaluated_users, full_ranking_per_user, summarise_per_user
from explorec.evaluation.scoring import Scorer


@dataclass(frozen=True)
class EvaluationTarget:
    """One evaluation: which interactions are targets, which items are masked, which history feeds users."""

    name: str
    targets: sp.csr_matrix
    exclude: sp.csr_matrix
    history: tuple[str, ...]


SAMPLED_FROM = "n_users_sampled_from"
"""The metric key, present only when a sample was evaluated, holding how many users had a target."""


@dataclass(frozen=True)
class UserSample:
    """At most `max_users` users per evaluation (None: every user with a target), drawn with `seed`.

    The draw depends only on the evaluation's targets and the seed, so every model scored on the same data
    set and split is scored on the same users and paired comparisons hold.
    """

    max_users: int | None = None
    seed: int = 0

    def users(self, targets: sp.csr_matrix) -> np.ndarray | None:
        """Return the sorted users to evaluate, or None when every user with a target is evaluated."""
        eligible = evaluated_users(targets)
        if self.max_users is None or eligible.size <= self.max_users:
            return None
        chosen = np.random.default_rng(self.seed).choice(eligible, size=self.max_users, replace=False)
        return np.sort(chosen)


def user_sample(cfg: EvaluationConfig) -> UserSample:
    """Return the users an evaluation under `cfg` scores (`evaluation.max_users`, `evaluation.seed`)."""
    return UserSample(max_users=cfg.max_users, seed=cfg.seed)


def sample_note(results: dict[str, dict[str, float]], sample: UserSample) -> str | None:
    """Return one sentence saying which evaluations a sample of users stands in for (None: all full)."""
    sampled = [
        f"{name} {int(metrics['n_users']):,} of {int(metrics[SAMPLED_FROM]):,} users"
        for name, metrics in results.items()
        if SAMPLED_FROM in metrics
    ]
    if not sampled:
        return None
    return (
        f"A seeded sample of users stands in for the whole: {', '.join(sampled)} "
        f"(evaluation.max_users={sample.max_users}, evaluation.seed={sample.seed})."
    )


PAIRED_METRIC = "ndcg@10"
"""The metric kept per user, so that two models scored on the same users can be compared pair by pair."""


@dataclass(frozen=True)
class PerUserValues:
    """One evaluation's users and each one's value of `PAIRED_METRIC`, in the same order."""

    users: np.ndarray
    values: np.ndarray


def evaluation_targets(dataset: ProcessedDataset) -> list[EvaluationTarget]:
    """Return validation (train masked) and test (train + validation masked) and, for cold items, two more.

    With held-out (cold) items the test set is also scored on its cold-item interactions alone, ranked
    over the whole catalogue (`test_cold`) and ranked among the held-out test items only
    (`test_cold_among_cold`).
    """
    train, train_valid = dataset.matrix("train"), dataset.matrix("train", "valid")
    targets = [
        EvaluationTarget("val", dataset.matrix("valid"), train, ("train",)),
        EvaluationTarget("test", dataset.matrix("test"), train_valid, ("train", "valid")),
    ]
    if "is_cold" in dataset.items and dataset.items["is_cold"].any():
        cold = dataset.items.loc[dataset.items["is_cold"], "item_idx"].to_numpy()
        cold_rows = dataset.test[dataset.test["item_idx"].isin(cold)]
        cold_targets = interactions_to_csr(cold_rows, n_users=dataset.n_users, n_items=dataset.n_items)
        mask_warm = _mask_all_but(np.unique(cold_rows["item_idx"]), cold_rows["user_idx"].unique(), dataset)
        targets.append(EvaluationTarget("test_cold", cold_targets, train_valid, ("train", "valid")))
        targets.append(EvaluationTarget("test_cold_among_cold", cold_targets, mask_warm, ("train", "valid")))
    return targets


def _mask_all_but(keep_items: np.ndarray, users: np.ndarray, dataset: ProcessedDataset) -> sp.csr_matrix:
    """Return an exclusion matrix that masks every item except `keep_items` for the given users."""
    masked_items = np.setdiff1d(np.arange(dataset.n_items), keep_items)
    rows = np.repeat(np.sort(users), masked_items.size)
    columns = np.tile(masked_items, users.size)
    data = np.ones(rows.size, dtype=np.float32)
    return sp.csr_matrix((data, (rows, columns)), shape=(dataset.n_users, dataset.n_items))


def evaluate(
    scorer: Scorer,
    dataset: ProcessedDataset,
    *,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 1024,
    sample: UserSample | None = None,
) -> dict[str, dict[str, float]]:
    """Return {evaluation name: metrics} by exact full ranking for every evaluation target."""
    return evaluate_per_user(scorer, dataset, ks=ks, batch_size=batch_size, sample=sample)[0]


def evaluate_per_user(
    scorer: Scorer,
    dataset: ProcessedDataset,
    *,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 1024,
    targets: Sequence[EvaluationTarget] | None = None,
    sample: UserSample | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, PerUserValues]]:
    """Return `evaluate`'s metrics and, per evaluation, each user's value of the selection metric.

    With a `sample` that draws fewer users than have a target, the metrics also hold SAMPLED_FROM.
    """
    results, per_user = {}, {}
    for target in evaluation_targets(dataset) if targets is None else targets:
        users = (sample or UserSample()).users(target.targets)
        evaluated, values = full_ranking_per_user(
            scorer,
            history_splits=target.history,
            targets=target.targets,
            exclude=target.exclude,
            ks=ks,
            batch_size=batch_size,
            users=users,
        )
        results[target.name] = summarise_per_user(evaluated, values)
        if users is not None:
            results[target.name][SAMPLED_FROM] = float(evaluated_users(target.targets).size)
        if PAIRED_METRIC in values:
            per_user[target.name] = PerUserValues(users=evaluated, values=values[PAIRED_METRIC])
    return results, per_user


def flat_metrics(results: dict[str, dict[str, float]]) -> dict[str, float]:
    """Return {"test/ndcg@10": ...} from {"test": {"ndcg@10": ...}}."""
    return {f"{name}/{key}": value for name, metrics in results.items() for key, value in metrics.items()}


def metrics_markdown(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """Return a Markdown table: one row per (model, evaluation), one column per metric."""
    columns = ["ndcg@10", "recall@10", "hit@10", "mrr@10", "ndcg@20", "recall@20", "n_users"]
    header = "| model | evaluation | " + " | ".join(columns) + " |"
    rule = "|---|---|" + "---:|" * len(columns)
    rows = []
    for model, evaluations in results.items():
        for evaluation, metrics in evaluations.items():
            cells = [_cell(metrics.get(column)) for column in columns]
            rows.append(f"| {model} | {evaluation} | " + " | ".join(cells) + " |")
    return "\n".join([header, rule, *rows]) + "\n"


def _cell(value: float | None) -> str:
    """Format one metric value for a table (blank when missing)."""
    if value is None:
        return ""
    return f"{value:.0f}" if float(value).is_integer() and value > 1 else f"{value:.4f}"
