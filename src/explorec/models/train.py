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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from explorec.config import ExplorecConfig, config_hash, resolve, to_dict
from explorec.data.loading import load_dataset
from explorec.encoders.text import item_text_embeddings
from explorec.evaluation.targets import (
    evaluate_per_user,
    flat_metrics,
    metrics_markdown,
    sample_note,
    user_sample,
)

if TYPE_CHECKING:
    from explorec.evaluation.targets import PerUserValues
    from explorec.tracking.store import TrackingTarget


@dataclass(frozen=True)
class TrainingResult:
    """A finished two-tower training run: where it is tracked, what it was trained on, how it scored.

    `best_epoch` and `best_val_ndcg_at_10` are known only to the process that fitted the model (a run
    found again for reuse has neither); `per_user` is kept only when asked for (it is not JSON).
    """

    run_id: str
    experiment_id: str
    tracking_uri: str
    encoder: str
    dataset: str
    split: str
    epochs_run: int
    fit_time_s: float
    metrics: dict[str, dict[str, float]]
    best_val_ndcg_at_10: float | None = None
    best_epoch: int | None = None
    per_user: dict[str, PerUserValues] | None = None
    evaluation_sample: str | None = None  # set when a sample of users stands in for the whole

    @classmethod
    def of_run(
        cls,
        cfg: ExplorecConfig,
        target: TrackingTarget,
        run_id: str,
        *,
        epochs_run: int,
        fit_time_s: float,
        metrics: dict[str, dict[str, float]],
        best_val_ndcg_at_10: float | None = None,
        best_epoch: int | None = None,
        per_user: dict[str, PerUserValues] | None = None,
        evaluation_sample: str | None = None,
    ) -> TrainingResult:
        """The result of training run `run_id` of `cfg` in the store `target` (fit time to 0.01 s)."""
        return cls(
            run_id=run_id,
            experiment_id=target.experiment_id,
            tracking_uri=target.tracking_uri,
            encoder=cfg.encoder.name,
            dataset=cfg.data.name,
            split=cfg.split.name,
            epochs_run=epochs_run,
            fit_time_s=round(fit_time_s, 2),
            metrics=metrics,
            best_val_ndcg_at_10=best_val_ndcg_at_10,
            best_epoch=best_epoch,
            per_user=per_user,
            evaluation_sample=evaluation_sample,
        )

    def to_summary(self) -> dict[str, Any]:
        """The JSON summary the train flow returns and the CLI prints (the best epoch only when known)."""
        summary: dict[str, Any] = {
            "run_id": self.run_id,
            "experiment_id": self.experiment_id,
            "tracking_uri": self.tracking_uri,
            "encoder": self.encoder,
            "dataset": self.dataset,
            "split": self.split,
        }
        if self.best_epoch is not None:
            summary["best_epoch_val_ndcg@10"] = self.best_val_ndcg_at_10
            summary["best_epoch"] = self.best_epoch
        summary.update(epochs_run=self.epochs_run, fit_time_s=self.fit_time_s, metrics=self.metrics)
        if self.evaluation_sample is not None:
            summary["evaluation_sample"] = self.evaluation_sample
        return summary


def _log_artifacts(
    client: Any,
    run_id: str,
    cfg: ExplorecConfig,
    fit: Any,
    results: dict[str, dict[str, float]],
    embeddings: np.ndarray | None,
) -> None:
    """Log the resolved config, metrics table, training curves, item vectors and best weights as artifacts."""
    from omegaconf import OmegaConf

    from explorec.tracking.plots import training_curves

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
        (folder / "metrics.json").write_text(json.dumps(results, indent=2))
        note = sample_note(results, user_sample(cfg.evaluation))
        table = metrics_markdown({"two_tower": results})
        (folder / "metrics.md").write_text(table if note is None else f"{table}\n{note}\n")
        title = f"two-tower, encoder {cfg.encoder.name}, {cfg.data.name} / {cfg.split.name}"
        training_curves(fit.history, folder / "plots" / "training_curves.png", title=title)
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
) -> TrainingResult:
    """Fit the two-tower model, evaluate it on validation and test, and track everything in MLflow.

    With `keep_per_user` the result also holds the per-user values of each evaluation.
    """
    import mlflow

    from explorec.models.fit import fit_two_tower
    from explorec.tracking.lightning import ExplorecMLFlowLogger
    from explorec.tracking.params import log_active_params
    from explorec.tracking.runs import tracked_run
    from explorec.tracking.store import configure_tracking, metric_dict, run_tags

    target = configure_tracking(cfg.tracking)
    dataset = load_dataset(cfg)
    started = time.perf_counter()
    embeddings = item_text_embeddings(dataset, cfg)
    encode_time = time.perf_counter() - started
    tags = run_tags(
        config_hash=config_hash(cfg), data_fingerprint=dataset.fingerprint, extra={"model": "two_tower"}
    )
    tags["encoder"] = cfg.encoder.name
    name = run_name or f"two_tower-{cfg.encoder.name}-{cfg.data.name}-{cfg.split.name}"
    client = mlflow.MlflowClient(target.tracking_uri)
    with tracked_run(
        client, target.experiment_id, run_name=name, tags=tags, parent_run_id=parent_run_id
    ) as run_id:
        log_active_params(client, run_id, to_dict(cfg))  # data, split, encoder, model, trainer, seed
        if cfg.evaluation.max_users is not None:  # a sample of users shaped the metrics: say which
            log_active_params(client, run_id, to_dict(cfg), sections=("evaluation",))
        logger = ExplorecMLFlowLogger(
            tracking_uri=target.tracking_uri, run_id=run_id, experiment_name=cfg.tracking.experiment
        )
        checkpoint_dir = resolve(cfg.paths.root) / "checkpoints" / run_id
        fit = fit_two_tower(dataset, embeddings, cfg, logger=logger, checkpoint_dir=checkpoint_dir)
        sample = user_sample(cfg.evaluation)
        results, per_user = evaluate_per_user(
            fit, dataset, batch_size=cfg.trainer.eval_batch_size, sample=sample
        )
        note = sample_note(results, sample)
        client.set_tag(run_id, "evaluation.sample", note or "every user with a target")
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
    return TrainingResult.of_run(
        cfg,
        target,
        run_id,
        epochs_run=fit.epochs_run,
        fit_time_s=fit.fit_time_s,
        metrics=results,
        best_val_ndcg_at_10=fit.best_score,
        best_epoch=int(fit.best_metrics.get("epoch", max(fit.epochs_run - 1, 0))),
        per_user=per_user if keep_per_user else None,
        evaluation_sample=note,
    )


def train_as_other_node(cfg: ExplorecConfig) -> dict[str, Any]:
    """Train this node's share of a multi-node DDP job (NODE_RANK > 0): no flow, MLflow run or checkpoint.

    Node 0's `explorec train` runs the flow, owns the MLflow run and keeps the best checkpoint; this node
    prepares the same inputs from the same config (preprocess and encoding are cached) and trains alongside.
    """
    from explorec.data.preprocess import preprocess
    from explorec.models.distributed import node_rank_from_environment
    from explorec.models.fit import fit_two_tower

    preprocess(cfg)
    dataset = load_dataset(cfg)
    embeddings = item_text_embeddings(dataset, cfg)
    with tempfile.TemporaryDirectory(prefix="explorec-node-") as scratch:  # rank 0 alone writes checkpoints
        fit = fit_two_tower(dataset, embeddings, cfg, checkpoint_dir=Path(scratch))
    node = node_rank_from_environment()
    return {"node_rank": node, "epochs_run": fit.epochs_run, "fit_time_s": fit.fit_time_s}
