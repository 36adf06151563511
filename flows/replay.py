"""Flow `replay`: preprocess (cached) → package a training run → replay sessions with feedback → run."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from explorec.config import from_dict, to_dict
from explorec.pipeline.config import load_config
from flows.train import preprocess_task


@task(name="replay-sessions")
def replay_task(config: dict[str, Any]) -> dict[str, Any]:
    """Replay the training run's served recommender with feedback against greedy; return the summary."""
    from explorec.serving.replay import run_replay

    return run_replay(from_dict(config))


@flow(name="replay", log_prints=True)
def replay_flow(overrides: list[str] | None = None) -> dict[str, Any]:
    """Does feedback sent back to the served model find more held-out items than greedy? (offline)"""
    cfg = load_config(overrides or [])
    config = to_dict(cfg)
    preprocess_task(config)
    summary = replay_task(config)
    create_markdown_artifact(key="replay", markdown=summary["markdown"], description="explorec replay")
    return summary
