"""Train and evaluate the two-tower model on one configuration, tracked as one MLflow run.

`train_and_evaluate(cfg)` is the one entry point that the train flow, the benchmark and the Optuna
objective call.
Selection happens on validation only: the test split is scored once, after training, from the best
validation checkpoint.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from explorec.config import ExplorecConfig, config_hash, project_root, to_dict
from explorec.data.preprocess import preprocess
from explorec.data.processed import ProcessedDataset, interactions_to_csr, load_processed
from explorec.evaluation.harness import full_ranking_per_user, summarise_per_user

ScoreForHistory = Callable[[np.ndarray, Sequence[str]], np.ndarray]
"""(user indices, history splits) -> scores [n_users, n_items]."""


def resolve(path: str) -> Path:
    """Return a config path as an absolute path (relative paths resolve under the project root)."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else project_root() / candidate


def load_dataset(cfg: ExplorecConfig) -> ProcessedDataset:
    """Preprocess (cached by fingerprint) and load the configured data set and split."""
    return load_processed(preprocess(cfg).output_dir)


def item_text_embeddings(dataset: ProcessedDataset, cfg: ExplorecConfig) -> np.ndarray | None:
    """Return the frozen text embeddings of every item in index order (None for encoder `none`), cached."""
    from explorec.encoders.text import encode_texts

    texts = dataset.items.sort_values("item_idx")["text"].tolist()
    return encode_texts(texts, cfg.encoder, cache_dir=resolve(cfg.encoder.cache_dir))


@dataclass(frozen=True)
class EvaluationTarget:
    """One evaluation: which interactions are targets, which items are masked, which history feeds users."""

    name: str
    targets: sp.csr_matrix
    exclude: sp.csr_matrix
    history: tuple[str, ...]


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
    score: ScoreForHistory, dataset: ProcessedDataset, *, ks: Sequence[int] = (10, 20), batch_size: int = 1024
) -> dict[str, dict[str, float]]:
    """Return {evaluation name: metrics} by exact full ranking for every evaluation target."""
    return evaluate_per_user(score, dataset, ks=ks, batch_size=batch_size)[0]


def evaluate_per_user(
    score: ScoreForHistory,
    dataset: ProcessedDataset,
    *,
    ks: Sequence[int] = (10, 20),
    batch_size: int = 1024,
    targets: Sequence[EvaluationTarget] | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, PerUserValues]]:
    """Return `evaluate`'s metrics and, per evaluation, each user's value of the selection metric."""
    results, per_user = {}, {}
    for target in evaluation_targets(dataset) if targets is None else targets:
        evaluated, values = full_ranking_per_user(
            lambda users, history=target.history: score(users, history),
            targets=target.targets,
            exclude=target.exclude,
            ks=ks,
            batch_size=batch_size,
        )
        results[target.name] = summarise_per_user(evaluated, values)
        if PAIRED_METRIC in values:
            per_user[target.name] = PerUserValues(users=evaluated, values=values[PAIRED_METRIC])
    return results, per_user


def flat_metrics(results: dict[str, dict[str, float]]) -> dict[str, float]:
    """Return {"test/ndcg@10": ...} from {"test": {"ndcg@10": ...}}."""
    return {f"{name}/{key}": value for name, metrics in results.items() for key, value in metrics.items()}


def _log_artifacts(
    client: Any,
    run_id: str,
    cfg: ExplorecConfig,
    fit: Any,
    results: dict[str, dict[str, float]],
    embeddings: np.ndarray | None,
) -> None:
    """Log the resolved config, metrics table, item vectors and best weights as run artifacts."""
    from omegaconf import OmegaConf

    from explorec.reporting import metrics_markdown

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
        (folder / "metrics.json").write_text(json.dumps(results, indent=2))
        (folder / "metrics.md").write_text(metrics_markdown({"two_tower": results}))
        np.save(folder / "item_vectors.npy", fit.item_vectors())
        if embeddings is not None:
            np.save(folder / "item_text_embeddings.npy", embeddings)
        client.log_artifacts(run_id, str(folder))
        if fit.best_checkpoint is not None:
            client.log_artifact(run_id, str(fit.best_checkpoint), artifact_path="checkpoint")


def train_and_evaluate(
    cfg: ExplorecConfig,
    *,
    parent_run_id: str | None = None,
    run_name: str | None = None,
    keep_per_user: bool = False,
) -> dict[str, Any]:
    """Fit the two-tower model, evaluate it on validation and test, and track everything in MLflow.

    With `keep_per_user` the summary also holds "per_user": {evaluation: PerUserValues} (not JSON).
    """
    import mlflow

    from explorec.mlflow_logger import ExplorecMLFlowLogger
    from explorec.models.fit import fit_two_tower
    from explorec.tracking import config_params, configure_tracking, metric_dict, run_tags

    target = configure_tracking(cfg.tracking)
    dataset = load_dataset(cfg)
    started = time.perf_counter()
    embeddings = item_text_embeddings(dataset, cfg)
    encode_time = time.perf_counter() - started
    tags = run_tags(
        config_hash=config_hash(cfg), data_fingerprint=dataset.fingerprint, extra={"model": "two_tower"}
    )
    tags["encoder"] = cfg.encoder.name
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    name = run_name or f"two_tower-{cfg.encoder.name}-{cfg.data.name}-{cfg.split.name}"
    client = mlflow.MlflowClient(target.tracking_uri)
    run = client.create_run(target.experiment_id, run_name=name, tags=tags)
    run_id = run.info.run_id
    try:
        for key, value in config_params(to_dict(cfg)).items():
            client.log_param(run_id, key, value)
        logger = ExplorecMLFlowLogger(
            tracking_uri=target.tracking_uri, run_id=run_id, experiment_name=cfg.tracking.experiment
        )
        checkpoint_dir = resolve(cfg.paths.root) / "checkpoints" / run_id
        fit = fit_two_tower(dataset, embeddings, cfg, logger=logger, checkpoint_dir=checkpoint_dir)
        results, per_user = evaluate_per_user(
            fit.score_users, dataset, batch_size=cfg.trainer.eval_batch_size
        )
        timings = {
            "time/fit_s": fit.fit_time_s,
            "time/encode_s": encode_time,
            "train/epochs_run": float(fit.epochs_run),
        }
        throughput = [
            epoch["train/examples_per_sec"] for epoch in fit.history if "train/examples_per_sec" in epoch
        ]
        if throughput:
            timings["train/mean_examples_per_sec"] = float(np.mean(throughput))
        final = {**metric_dict(flat_metrics(results), prefix="final/"), **timings}
        for key, value in final.items():
            client.log_metric(run_id, key, value)
        _log_artifacts(client, run_id, cfg, fit, results, embeddings)
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    summary: dict[str, Any] = {
        "run_id": run_id,
        "experiment_id": target.experiment_id,
        "tracking_uri": target.tracking_uri,
        "encoder": cfg.encoder.name,
        "dataset": cfg.data.name,
        "split": cfg.split.name,
        "best_epoch_val_ndcg@10": fit.best_score,
        "best_epoch": int(fit.best_metrics.get("epoch", max(fit.epochs_run - 1, 0))),
        "epochs_run": fit.epochs_run,
        "fit_time_s": round(fit.fit_time_s, 2),
        "metrics": results,
    }
    if keep_per_user:
        summary["per_user"] = per_user
    return summary
