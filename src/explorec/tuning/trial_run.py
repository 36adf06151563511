"""Train and evaluate one trial's configuration as a nested MLflow run (no Optuna here).

This is the body of `explorec.models.train.train_and_evaluate` minus the artifacts a search does not need
(checkpoints, item vectors): the same `fit_two_tower` and the same `evaluate`, plus extra Lightning callbacks
(the pruning callback) and the fitted model handed back so the objective can serve slates from it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from explorec.config import ExplorecConfig, config_hash, to_dict
from explorec.data.processed import ProcessedDataset


@dataclass
class TrialFit:
    """The fitted model of one trial and its validation/test metrics (full ranking, train items masked)."""

    fit: Any
    results: dict[str, dict[str, float]]


def trial_run_tags(cfg: ExplorecConfig, *, data_fingerprint: str, tags: Mapping[str, str]) -> dict[str, str]:
    """Return the tags of a trial's MLflow run: the standard ones, the model and the trial's own."""
    from explorec.tracking.store import run_tags

    return run_tags(
        config_hash=config_hash(cfg), data_fingerprint=data_fingerprint, extra={"model": "two_tower", **tags}
    )


def log_trial_params(client: Any, run_id: str, cfg: ExplorecConfig) -> None:
    """Log the sections of the trial's config that shape its training run as the run's params."""
    from explorec.tracking.params import log_active_params

    log_active_params(client, run_id, to_dict(cfg))


def fit_and_evaluate(
    cfg: ExplorecConfig,
    dataset: ProcessedDataset,
    text_embeddings: np.ndarray | None,
    *,
    tracking_uri: str,
    run_id: str,
    callbacks: Sequence[Any] = (),
) -> TrialFit:
    """Fit the two-tower model (per-epoch curves into the run, and as a figure) and evaluate it."""
    from mlflow import MlflowClient

    from explorec.evaluation.targets import evaluate
    from explorec.models.fit import fit_two_tower
    from explorec.tracking.lightning import ExplorecMLFlowLogger
    from explorec.tracking.plots import log_figure, training_curves

    logger = ExplorecMLFlowLogger(
        tracking_uri=tracking_uri, run_id=run_id, experiment_name=cfg.tracking.experiment
    )
    with tempfile.TemporaryDirectory(prefix="explorec-trial-") as scratch:
        fit = fit_two_tower(
            dataset, text_embeddings, cfg, callbacks=callbacks, logger=logger, checkpoint_dir=Path(scratch)
        )
    title = f"trial run, embedding_dim {cfg.model.embedding_dim}, encoder {cfg.encoder.name}"
    log_figure(
        MlflowClient(tracking_uri),
        run_id,
        lambda folder: training_curves(fit.history, folder / "training_curves.png", title=title),
        "plots",
    )
    results = evaluate(fit, dataset, batch_size=cfg.trainer.eval_batch_size)
    return TrialFit(fit=fit, results=results)
