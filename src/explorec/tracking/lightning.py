"""Lightning's MLflow logger adapted to explorec's metric names (kept apart: importing Lightning is slow)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger

from explorec.tracking.store import metric_name


class ExplorecMLFlowLogger(MLFlowLogger):
    """Lightning's MLflow logger with MLflow-safe metric names; the run's params are logged by explorec."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log metrics under MLflow-safe names (`val/ndcg@10` becomes `val/ndcg_at_10`)."""
        super().log_metrics({metric_name(key): value for key, value in metrics.items()}, step)

    def log_hyperparams(self, params: Any) -> None:
        """Skip: explorec logs the whole resolved config as params itself."""
