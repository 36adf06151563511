"""The shape most flows share: compose the config once, make sure the data set is preprocessed (and its item
text encoded), run the flow's own step and attach the step's Markdown summary to the flow run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect.artifacts import create_markdown_artifact

from explorec.config import to_dict
from explorec.pipeline.config import load_config
from flows.train import encode_task, preprocess_task


def run_step(
    step: Callable[[dict[str, Any]], dict[str, Any]],
    overrides: list[str] | None,
    *,
    artifact: str,
    encode: bool = False,
) -> dict[str, Any]:
    """Run `step` on the composed config after preprocessing (and encoding); publish its `markdown`."""
    config = to_dict(load_config(overrides or []))
    preprocess_task(config)
    if encode:
        encode_task(config)
    summary = step(config)
    create_markdown_artifact(key=artifact, markdown=summary["markdown"], description=f"explorec {artifact}")
    return summary
