"""What a simulation and a study return: tables (pandas), the Markdown report, plot paths and facts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass
class SimulationResult:
    """Tables (pandas), the Markdown summary, plot paths and facts about the world and the run."""

    per_replication: pd.DataFrame
    summary: pd.DataFrame
    comparisons: pd.DataFrame
    curves: pd.DataFrame
    logs: pd.DataFrame
    ope: pd.DataFrame
    world_info: dict[str, Any]
    markdown: str = ""
    plots: dict[str, Path] = field(default_factory=dict)
    runtime_s: float = 0.0


@dataclass
class StudyResult:
    """The study's tables (cells stacked with world, ground truth, encoder columns), answer, report, plots."""

    summary: pd.DataFrame
    per_replication: pd.DataFrame
    comparisons: pd.DataFrame
    equal_cost: pd.DataFrame
    matched_rate: pd.DataFrame
    rungs: pd.DataFrame
    agreement: pd.DataFrame
    selection: pd.DataFrame
    curves: pd.DataFrame
    answer: dict[str, Any]
    world_info: dict[str, Any]
    markdown: str = ""
    plots: dict[str, Path] = field(default_factory=dict)
    runtime_s: float = 0.0


@dataclass(frozen=True)
class TrackedSimulation:
    """A simulation recorded as an MLflow run: the run, its timings (s, to 0.1), world facts and tables."""

    run_id: str
    tracking_uri: str
    runtime_s: float
    recommender_s: float
    total_s: float
    world: dict[str, Any]
    markdown: str
    comparisons: pd.DataFrame

    def to_summary(self) -> dict[str, Any]:
        """The JSON summary the simulate flow returns and the CLI prints (no tables)."""
        return {
            "run_id": self.run_id,
            "tracking_uri": self.tracking_uri,
            "runtime_s": self.runtime_s,
            "recommender_s": self.recommender_s,
            "total_s": self.total_s,
            "world": self.world,
            "markdown": self.markdown,
        }
