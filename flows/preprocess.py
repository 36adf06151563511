"""Flow `preprocess`: load the config once, then read, validate, split and write model-ready tables."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from explorec.config import from_dict, to_dict
from explorec.data.preprocess import preprocess
from explorec.pipeline.config import load_config
from explorec.pipeline.report import preprocess_markdown
from flows.common import IO_RETRIES


@task(name="preprocess-data", **IO_RETRIES)
def preprocess_task(config: dict[str, Any]) -> dict[str, Any]:
    """Run the library's preprocessing on a plain config dict and return its small summary."""
    return preprocess(from_dict(config)).summary()


@flow(name="preprocess", log_prints=True)
def preprocess_flow(overrides: list[str] | None = None) -> dict[str, Any]:
    """Turn a raw data set into validated, split Parquet tables (cached by input + config fingerprint)."""
    cfg = load_config(overrides or [])
    summary = preprocess_task(to_dict(cfg))
    summary["dataset"], summary["split"] = cfg.data.name, cfg.split.name
    create_markdown_artifact(
        key="preprocess-summary", markdown=preprocess_markdown(summary), description="explorec preprocess"
    )
    return summary
