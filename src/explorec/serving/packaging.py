"""Package a trained model as a served bundle: from its parts, a fit or a finished MLflow run, with the
score calibration σ(slope·score + intercept) fitted on validation items (`fit_score_calibration`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from explorec.config.registry import IndexConfig
from explorec.evaluation.statistics import fit_logistic
from explorec.policies.spec import PolicySpec
from explorec.serving.bundle import (
    SERVING_HISTORY_SPLITS,
    RecommenderBundle,
    ScoreCalibration,
    catalogue,
    tower_config,
    user_histories,
)
from explorec.serving.index import build_index, recall_at_k
from explorec.serving.recommender import Recommender

if TYPE_CHECKING:
    import torch

    from explorec.config import EncoderConfig
    from explorec.data.processed import ProcessedDataset

INDEX_RECALL_METRIC = "index/recall_at_10"
"""The served index's recall@10 against exact search, logged on the run and the model version."""
CALIBRATION_PAIRS = 2_000_000
"""The score calibration reads at most this many (user, item) pairs: the first users by index with train and
validation items, as many as fit (on ML-100K every user)."""


def bundle_from_parts(
    *,
    dataset: ProcessedDataset,
    item_vectors: np.ndarray,
    user_tower_state: Mapping[str, torch.Tensor],
    tower: dict[str, Any],
    policy: PolicySpec,
    text_embeddings: np.ndarray | None = None,
    history_splits: Sequence[str] = SERVING_HISTORY_SPLITS,
) -> RecommenderBundle:
    """Assemble a bundle from trained parts and the data set they were trained on; fit its calibration."""
    if item_vectors.shape[0] != dataset.n_items:
        raise ValueError(
            f"item_vectors has {item_vectors.shape[0]} rows; the catalogue has {dataset.n_items}"
        )
    item_ids, titles, popularity = catalogue(dataset)
    user_ids, offsets, items = user_histories(dataset, history_splits)
    bundle = RecommenderBundle(
        item_vectors=np.asarray(item_vectors, dtype=np.float32),
        user_tower_state={key: value.detach().cpu().clone() for key, value in user_tower_state.items()},
        tower_config=tower,
        item_ids=item_ids,
        titles=titles,
        item_popularity=popularity,
        user_ids=user_ids,
        history_offsets=offsets,
        history_items=items,
        policy=policy,
        text_embeddings=text_embeddings,
    )
    bundle.score_calibration = fit_score_calibration(bundle, dataset)
    return bundle


def tower_state_from_checkpoint(checkpoint: Path, tower: str = "user_tower") -> dict[str, Any]:
    """Return one tower's weights (`user_tower` or `item_tower`) from a Lightning checkpoint, weights-only."""
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    prefix = f"{tower}."
    return {key.removeprefix(prefix): value for key, value in state.items() if key.startswith(prefix)}


def attach_item_tower(
    bundle: RecommenderBundle,
    item_tower_state: Mapping[str, torch.Tensor],
    model_cfg: Any,
    encoder: EncoderConfig,
    dataset: ProcessedDataset,
) -> None:
    """Give a bundle what embeds items added after training: the item tower's text path and its spec."""
    from explorec.models.data import genre_vocabulary
    from explorec.serving.new_items import item_tower_spec, text_path_state

    items = dataset.items
    genres = genre_vocabulary(items["genres"]) if model_cfg.use_genres and "genres" in items else None
    text_dim = None if bundle.text_embeddings is None else int(bundle.text_embeddings.shape[1])
    bundle.item_tower_spec = item_tower_spec(model_cfg, encoder, text_dim, genres or None)
    bundle.item_tower_state = text_path_state(item_tower_state)


def bundle_from_run(
    run_id: str,
    dataset: ProcessedDataset,
    model_cfg: Any,
    policy: PolicySpec,
    *,
    tracking_uri: str | None = None,
    history_splits: Sequence[str] = SERVING_HISTORY_SPLITS,
    encoder: EncoderConfig | None = None,
) -> RecommenderBundle:
    """Build a bundle from a training run's logged artifacts (item_vectors.npy, checkpoint/best.ckpt).

    With `encoder` (the one the run was trained with), the bundle can also embed items added later.
    """
    import tempfile

    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    logged = {artifact.path for artifact in client.list_artifacts(run_id)}
    wanted = ["item_vectors.npy", "checkpoint/best.ckpt"]
    if "item_text_embeddings.npy" in logged:
        wanted.append("item_text_embeddings.npy")
    with tempfile.TemporaryDirectory() as scratch:
        local = {path: Path(client.download_artifacts(run_id, path, scratch)) for path in wanted}
        text_path = local.get("item_text_embeddings.npy")
        checkpoint = local["checkpoint/best.ckpt"]
        bundle = bundle_from_parts(
            dataset=dataset,
            item_vectors=np.load(local["item_vectors.npy"]),
            user_tower_state=tower_state_from_checkpoint(checkpoint),
            tower=tower_config(model_cfg, dataset.n_users),
            policy=policy,
            text_embeddings=None if text_path is None else np.load(text_path),
            history_splits=history_splits,
        )
        if encoder is not None and not model_cfg.separate_input_items:
            item_state = tower_state_from_checkpoint(checkpoint, "item_tower")
            attach_item_tower(bundle, item_state, model_cfg, encoder, dataset)
        return bundle


def fit_score_calibration(
    bundle: RecommenderBundle, dataset: ProcessedDataset, *, max_pairs: int = CALIBRATION_PAIRS
) -> ScoreCalibration | None:
    """Fit σ(slope·score + intercept) to whether an item is among a user's validation items.

    Each user with train and validation items (the first max(1, max_pairs // n_items)) is scored from their
    train history as the server scores a history; every item outside that history is one example. None
    when no user qualifies, the labels are all alike, or the fitted slope is not positive (scores that do
    not rank the validation items up cannot be read as probabilities).
    """
    train, valid = dataset.matrix("train"), dataset.matrix("valid")
    has_both = (np.diff(train.indptr) > 0) & (np.diff(valid.indptr) > 0)
    users = np.flatnonzero(has_both)[: max(1, max_pairs // max(bundle.n_items, 1))]
    if users.size == 0:
        return None
    recommender = Recommender(bundle)
    _, offsets, items = user_histories(dataset, ("train",))
    histories = [items[offsets[user] : offsets[user + 1]] for user in users]
    vectors = recommender.user_vectors(histories, [int(user) for user in users])
    scores = vectors.astype(np.float64) @ recommender.item_vectors.T.astype(np.float64)
    candidates = train[users].toarray() == 0
    labels = valid[users].toarray()[candidates] > 0
    if labels.all() or not labels.any():
        return None
    slope, intercept = fit_logistic(feature=scores[candidates], target=labels)
    return ScoreCalibration(slope, intercept) if slope > 0 else None


def attach_index(bundle: RecommenderBundle, cfg: IndexConfig, *, seed: int = 0) -> dict[str, float | str]:
    """Build the bundle's faiss index; return its kind and recall@10 against exact search.

    Recall is measured on the vectors of up to `cfg.recall_users` known users with a history (a seeded
    sample), as the server computes them.
    """
    bundle.item_index = build_index(bundle.item_vectors, cfg)
    recommender = Recommender(bundle)
    rows = [row for row in range(len(bundle.user_ids)) if bundle.history(row).size]
    if len(rows) > cfg.recall_users:
        rows = sorted(np.random.default_rng(seed).choice(rows, size=cfg.recall_users, replace=False).tolist())
    recall = float("nan")
    if rows:
        vectors = recommender.user_vectors([bundle.history(row) for row in rows], rows)
        recall = recall_at_k(bundle.item_index, vectors, bundle.item_vectors, k=min(10, bundle.n_items))
    return {"kind": bundle.item_index.kind, "recall_at_10": recall}


def log_index_report(
    client: Any, run_id: str, model_id: str, report: dict[str, float | str]
) -> dict[str, str]:
    """Log the index's recall@10 on run `run_id` and its logged model `model_id`, with tags; return them.

    The run's metric becomes the registered version's `metric.index/recall_at_10` tag, the logged model's
    metric the version's own metric; `index.kind` and `index.recall_at_10` are tags of both. Through the
    client, so no run is (re)opened.
    """
    import time

    from mlflow.entities import Metric, RunTag

    recall = float(report["recall_at_10"])
    tags = {"index.kind": str(report["kind"]), "index.recall_at_10": f"{recall:.4f}"}
    metric = Metric(INDEX_RECALL_METRIC, recall, int(time.time() * 1000), 0, model_id=model_id)
    client.log_batch(run_id, metrics=[metric], tags=[RunTag(key, value) for key, value in tags.items()])
    client.set_logged_model_tags(model_id, tags)
    return tags
