"""Session replay: does feedback sent back to the server find more of a user's held-out items?

Offline and deterministic under a seed. Every evaluation user asks `visits` times for k items from a fixed
history (train when judged on validation items, train + validation when judged on test items), each time
sending back everything shown so far and which of it was clicked, where a click is a shown item among the
user's held-out items. Each configuration (policy, exploration rate, feedback weight) is served through
`Recommender.recommend`, the path a served model takes, and compared user by user with `greedy` under the
same protocol (shown items excluded, nothing learned): held-out items found per user over the session, with
a paired 95% t interval over users and Holm-adjusted p-values.

    explorec replay replay.run_id=<training run> [replay.evaluation=test] [the run's overrides]

Choose settings with `replay.evaluation=valid`; report them with `replay.evaluation=test`. Each replay is
an MLflow run (tag `explorec.replayed_run_id`): per configuration `replay/<label>/found`, `…/difference`,
`…/ci_low`, `…/ci_high`, `…/p_holm`, and the table as replay.md / replay.json.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from explorec.policies.spec import PolicySpec
from explorec.serving.bundle import RecommenderBundle, user_histories
from explorec.serving.recommender import Recommender, Request

if TYPE_CHECKING:
    from explorec.config import ExplorecConfig
    from explorec.data.processed import ProcessedDataset

EVALUATIONS = {"valid": ("train",), "test": ("train", "valid")}
"""Held-out split → the history splits a user is served from."""
CONTROL = PolicySpec("greedy", 0.0, {})
REPLAYED_RUN_TAG = "explorec.replayed_run_id"


@dataclass(frozen=True)
class Sessions:
    """The users replayed: each one's history and held-out items (item indices)."""

    users: np.ndarray
    histories: list[np.ndarray]
    held_out: list[np.ndarray]


def evaluation_sessions(dataset: ProcessedDataset, evaluation: str) -> Sessions:
    """Users with a history and at least one held-out item in `evaluation` ('valid' or 'test')."""
    if evaluation not in EVALUATIONS:
        raise ValueError(f"evaluation must be one of {sorted(EVALUATIONS)}, got {evaluation!r}")
    _, offsets, items = user_histories(dataset, EVALUATIONS[evaluation])
    held = dataset.matrix(evaluation)
    users = np.flatnonzero((np.diff(offsets) > 0) & (np.diff(held.indptr) > 0))
    return Sessions(
        users=users,
        histories=[items[offsets[user] : offsets[user + 1]] for user in users],
        held_out=[held[user].indices for user in users],
    )


def replay_sessions(
    bundle: RecommenderBundle, sessions: Sessions, policy: PolicySpec, *, visits: int, k: int, seed: int
) -> np.ndarray:
    """Held-out items found per user and visit [n_users, visits], serving `policy` with feedback.

    Histories are sent as `recent_item_ids` without a user id (the bundle's stored histories hold the
    held-out items too), so a model with user-ID embeddings, which would then serve every user as cold
    start, is refused.
    """
    if bundle.tower_config.get("n_users") is not None:
        raise ValueError("the replay needs a model without user-ID embeddings (model.use_user_id=false)")
    recommender = Recommender(replace(bundle, policy=policy))
    ids = np.asarray(bundle.item_ids, dtype=object)
    recent = [tuple(ids[history]) for history in sessions.histories]
    positives = [set(ids[held]) for held in sessions.held_out]
    shown: list[list[str]] = [[] for _ in sessions.users]
    clicked: list[list[str]] = [[] for _ in sessions.users]
    found = np.zeros((len(sessions.users), visits), dtype=np.int64)
    for visit in range(visits):
        requests = [
            Request(
                user_id=None,
                recent_item_ids=recent[row],
                k=k,
                exploration_rate=None,
                seed=seed + visits * row + visit,
                shown_item_ids=tuple(shown[row]),
                clicked_item_ids=tuple(clicked[row]),
            )
            for row in range(len(recent))
        ]
        for row, answer in enumerate(recommender.recommend(requests)):
            hits = [item for item in answer.item_ids if item in positives[row]]
            shown[row].extend(answer.item_ids)
            clicked[row].extend(hits)
            found[row, visit] = len(hits)
    return found


def policy_grid(
    policy: PolicySpec, rates: Sequence[float], feedback_weights: Sequence[float]
) -> list[PolicySpec]:
    """The bundle's policy at every rate (and, for the linear policies, every feedback weight)."""
    if not policy.policy_class.learns_linear_model:
        return [replace(policy, exploration_rate=float(rate)) for rate in rates]
    return [
        PolicySpec(policy.name, float(rate), {**policy.params, "feedback_weight": float(weight)})
        for rate in rates
        for weight in feedback_weights
    ]


def policy_label(policy: PolicySpec) -> str:
    """E.g. 'linucb@1 (feedback weight 0.01)'."""
    label = f"{policy.name}@{policy.exploration_rate:g}"
    if "feedback_weight" in policy.params:
        label += f" (feedback weight {policy.params['feedback_weight']:g})"
    return label


def replay_comparison(
    bundle: RecommenderBundle,
    dataset: ProcessedDataset,
    policies: Sequence[PolicySpec],
    *,
    evaluation: str = "valid",
    visits: int = 5,
    k: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Replay every policy and greedy; return rows of found items and paired differences vs greedy."""
    from explorec.evaluation.statistics import holm_adjust, paired_difference

    sessions = evaluation_sessions(dataset, evaluation)
    control = replay_sessions(bundle, sessions, CONTROL, visits=visits, k=k, seed=seed)
    rows = [{"policy": "greedy (control)", "found": float(control.sum(axis=1).mean())}]
    for policy in policies:
        found = replay_sessions(bundle, sessions, policy, visits=visits, k=k, seed=seed)
        difference = paired_difference(treatment=found.sum(axis=1), control=control.sum(axis=1))
        rows.append(
            {
                "policy": policy_label(policy),
                "found": float(found.sum(axis=1).mean()),
                "difference": difference.mean,
                "ci_low": difference.ci_low,
                "ci_high": difference.ci_high,
                "p_value": difference.p_value,
                "first_visit": float(found[:, 0].mean()),
            }
        )
    adjusted = holm_adjust(p_values=np.array([row["p_value"] for row in rows[1:]])) if len(rows) > 1 else []
    for row, p_holm in zip(rows[1:], adjusted, strict=True):
        row["p_holm"] = float(p_holm)
    rows[0]["first_visit"] = float(control[:, 0].mean())
    summary = {
        "evaluation": evaluation,
        "n_users": int(sessions.users.size),
        "held_out_per_user": float(np.mean([held.size for held in sessions.held_out])),
        "visits": visits,
        "k": k,
        "rows": rows,
    }
    summary["markdown"] = replay_markdown(summary)
    return summary


def replay_markdown(summary: dict[str, Any]) -> str:
    """The comparison as a Markdown table."""
    lines = [
        f"# Session replay ({summary['evaluation']} items held out)",
        "",
        f"{summary['n_users']} users, {summary['held_out_per_user']:.1f} held-out items each on average; "
        f"{summary['visits']} visits of k={summary['k']}, each sending back what was shown and clicked "
        "(a click = a shown held-out item). Found = held-out items shown per user over the session; "
        "difference vs greedy, paired over users, 95% t interval, Holm-adjusted p.",
        "",
        "| policy | found | first visit | difference vs greedy | 95% interval | p (Holm) |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for row in summary["rows"]:
        if "difference" not in row:
            lines.append(f"| {row['policy']} | {row['found']:.4f} | {row['first_visit']:.4f} | | | |")
            continue
        lines.append(
            f"| {row['policy']} | {row['found']:.4f} | {row['first_visit']:.4f} | {row['difference']:+.4f} "
            f"| [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}] | {row['p_holm']:.3g} |"
        )
    return "\n".join(lines) + "\n"


def metric_key(label: str) -> str:
    """An MLflow-safe metric prefix for a configuration label: 'linucb@1 (feedback weight 0.01)' →
    'replay/linucb_at_1_feedback_weight_0.01'."""
    safe = re.sub(r"[^0-9A-Za-z_.-]+", "_", label.replace("@", "_at_")).strip("_")
    return f"replay/{safe}"


def replay_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The summary's rows as MLflow metrics."""
    metrics: dict[str, float] = {}
    for row in summary["rows"]:
        prefix = metric_key(row["policy"])
        for name in ("found", "first_visit", "difference", "ci_low", "ci_high", "p_holm"):
            if name in row:
                metrics[f"{prefix}/{name}"] = float(row[name])
    return metrics


def run_replay(cfg: ExplorecConfig) -> dict[str, Any]:
    """Package `replay.run_id` as `explorec register` would, replay it, and record an MLflow run."""
    import mlflow

    from explorec.config import config_hash, to_dict
    from explorec.data.loading import load_dataset
    from explorec.errors import ConfigError
    from explorec.models.fit import resolve_model_config
    from explorec.serving.packaging import bundle_from_run
    from explorec.tracking.store import config_params, configure_tracking, run_tags

    settings = cfg.replay
    if not settings.run_id:
        raise ConfigError("replay.run_id is required: the training run whose recommender is replayed")
    target = configure_tracking(cfg.tracking)
    try:
        mlflow.MlflowClient(target.tracking_uri).get_run(settings.run_id)
    except mlflow.exceptions.MlflowException as error:
        raise ConfigError(
            f"replay.run_id={settings.run_id!r}: no such MLflow run in {target.tracking_uri}"
        ) from error
    dataset = load_dataset(cfg)
    model_cfg = resolve_model_config(cfg.model, cfg.split.name)
    policy = PolicySpec.from_config(cfg.policy)
    bundle = bundle_from_run(settings.run_id, dataset, model_cfg, policy, tracking_uri=target.tracking_uri)
    summary = replay_comparison(
        bundle,
        dataset,
        policy_grid(policy, settings.rates, settings.feedback_weights),
        evaluation=settings.evaluation,
        visits=settings.visits,
        k=settings.k,
        seed=cfg.seed,
    )
    values = to_dict(cfg)
    tags = run_tags(
        config_hash=config_hash(values),
        data_fingerprint=dataset.fingerprint,
        extra={REPLAYED_RUN_TAG: settings.run_id},
    )
    run_name = f"replay-{settings.run_id[:8]}-{settings.evaluation}"
    with mlflow.start_run(run_name=run_name, tags=tags) as run:
        mlflow.log_params(config_params({"replay": values["replay"], "policy": values["policy"]}))
        mlflow.log_metrics(replay_metrics(summary))
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            (folder / "replay.md").write_text(summary["markdown"])
            table = {key: value for key, value in summary.items() if key != "markdown"}
            (folder / "replay.json").write_text(json.dumps(table, indent=2))
            mlflow.log_artifacts(str(folder))
    return {
        **summary,
        "run_id": run.info.run_id,
        "replayed_run_id": settings.run_id,
        "tracking_uri": target.tracking_uri,
    }
