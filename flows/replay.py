"""Flow `replay`: preprocess (cached) → package a training run → replay sessions with feedback → run."""

from __future__ import annotations

from typing import Any

from prefect import flow, task

from explorec.config import from_dict
from flows.steps import run_step


@task(name="replay-sessions")
def replay_task(config: dict[str, Any]) -> dict[str, Any]:
    """Replay the training run's served recommender with feedback against greedy; return the summary."""
    from explorec.serving.replay import run_replay

    return run_replay(from_dict(config))


@flow(name="replay", log_prints=True)
def replay_flow(overrides: list[str] | None = None) -> dict[str, Any]:
    """Does feedback sent back to the served model find more held-out items than greedy? (offline)"""
    return run_step(replay_task, overrides, artifact="replay")
