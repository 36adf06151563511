"""Flow `train`: preprocess (cached) → encode (cached) → fit → evaluate → MLflow run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from explorec.config import from_dict, to_dict
from explorec.pipeline.config import load_config
from explorec.pipeline.report import train_markdown
from flows.common import IO_RETRIES

if TYPE_CHECKING:
    from explorec.models.train import TrainingResult


@task(name="preprocess-data", **IO_RETRIES)
def preprocess_task(config: dict[str, Any]) -> str:
    """Make sure the processed tables exist (cached by fingerprint); return their folder."""
    from explorec.data.preprocess import preprocess

    return str(preprocess(from_dict(config)).output_dir)


@task(name="encode-item-text", **IO_RETRIES)
def encode_task(config: dict[str, Any]) -> int:
    """Encode every item's text with the frozen encoder into the on-disk cache; return the item count."""
    from explorec.data.loading import load_dataset
    from explorec.encoders.text import item_text_embeddings

    cfg = from_dict(config)
    embeddings = item_text_embeddings(load_dataset(cfg), cfg)
    return 0 if embeddings is None else len(embeddings)


@task(name="fit-and-evaluate")
def fit_task(config: dict[str, Any], parent_run_id: str | None = None) -> TrainingResult:
    """Fit the two-tower model, evaluate on validation and test, log the MLflow run; return its result."""
    from explorec.models.train import train_and_evaluate

    return train_and_evaluate(from_dict(config), parent_run_id=parent_run_id)


@flow(name="train", log_prints=True)
def train_flow(overrides: list[str] | None = None) -> dict[str, Any]:
    """Train and evaluate the two-tower recommender on one configuration, tracked in MLflow."""
    from explorec.pipeline.prefect_home import mlflow_ui_url

    cfg = load_config(overrides or [])
    config = to_dict(cfg)
    preprocess_task(config)
    encode_task(config)
    trained = fit_task(config)
    create_markdown_artifact(
        key="train-summary",
        markdown=train_markdown(
            {**trained.to_summary(), "mlflow_ui_url": mlflow_ui_url(trained.tracking_uri)}
        ),
        description="explorec train",
    )
    return trained.to_summary()
