"""The cells of `explorec study` (world × ground truth × encoder × pool) and the ladder's rung pairs."""

from __future__ import annotations

from dataclasses import dataclass

from explorec.config.simulation import StudyConfig

CELL_COLUMNS = ("world", "ground_truth", "encoder")
TEXT_FREE_ENCODER = "none"
GOAL_WORLD = "churn"
GOAL_RATIO = 1.5
POOLED = "exploring policies (mean over policies and δ levels)"


@dataclass(frozen=True)
class StudyCell:
    """One simulation of the study: a world, a ground truth, an encoder and the pool it runs on."""

    world: str
    ground_truth: str
    encoder: str
    pool: str

    @property
    def key(self) -> str:
        """The cell's name (plans, unit results and output folders are keyed by it)."""
        return f"{self.pool}/{self.world}/{self.ground_truth}/{self.encoder}"


def reported_cells(study: StudyConfig) -> list[StudyCell]:
    """Every world × ground truth × encoder on the reported pool, in that order."""
    return [
        StudyCell(world, truth, encoder, study.pool)
        for world in study.worlds
        for truth in study.ground_truths
        for encoder in study.encoders
    ]


def selection_cells(study: StudyConfig) -> list[StudyCell]:
    """The cells the churn goal's best policy is chosen on: text rungs, churn world, first ground truth."""
    if not study.selection_pool or GOAL_WORLD not in study.worlds:
        return []
    truth = study.ground_truths[0]
    return [
        StudyCell(GOAL_WORLD, truth, encoder, study.selection_pool)
        for encoder in study.encoders
        if encoder != TEXT_FREE_ENCODER
    ]


def study_cells(study: StudyConfig) -> list[StudyCell]:
    """Reported cells, then selection cells."""
    return reported_cells(study) + selection_cells(study)


def rung_pairs(study: StudyConfig) -> list[tuple[str, str]]:
    """Adjacent rungs of the ladder as (lower, upper)."""
    return list(zip(study.encoders[:-1], study.encoders[1:], strict=True))
