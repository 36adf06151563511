"""Flow `study`: preprocess, encode (each encoder), encoder × policy × rate in the simulator, MLflow run."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from explorec.config import from_dict, to_dict
from explorec.pipeline.config import load_config
from flows.train import encode_task, preprocess_task


@task(name="study-grid")
def study_task(configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Simulate the study grid with every encoder's towers; return the run's summary and answer."""
    from explorec.simulation.tracked import study_and_track

    return study_and_track({encoder: from_dict(config) for encoder, config in configs.items()})


def encoder_overrides(overrides: list[str], encoder: str) -> list[str]:
    """The overrides with the encoder group set to `encoder` (any other choice of the group dropped)."""
    return [item for item in overrides if not item.startswith("encoder=")] + [f"encoder={encoder}"]


@flow(name="study", log_prints=True)
def study_flow(overrides: list[str] | None = None) -> dict[str, Any]:
    """How much discovery and long-term reward the language-model item tower buys at equal short-term cost."""
    overrides = list(overrides or [])
    cfg = load_config(overrides)
    configs = {
        encoder: to_dict(load_config(encoder_overrides(overrides, encoder))) for encoder in cfg.study.encoders
    }
    preprocess_task(to_dict(cfg))
    for config in configs.values():
        encode_task(config)
    summary = study_task(configs)
    create_markdown_artifact(key="study", markdown=summary["markdown"], description="explorec study")
    return summary
