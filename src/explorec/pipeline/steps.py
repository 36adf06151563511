"""What the pipeline's steps hand each other: typed results, turned into JSON summaries at the edge.

`cache` says whether a step's result is new or reused: "miss" (new), "forced" (new, pipeline.force=true),
"hit" (reused), "hit (gates decided again)" (a reused version whose gates were decided anew) or
"skipped" (the step did not run).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from explorec.models.train import TrainingResult


@dataclass(frozen=True)
class TrainedCandidate:
    """The candidate's training run, whether it was reused, and the served metrics it already holds.

    `packaged` says the run already holds a model packaged for the configured policy, whose served-slate
    metrics are `served`; otherwise the run still needs packaging.
    """

    training: TrainingResult
    cache: str
    packaged: bool = False
    served: dict[str, float] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        """The training run's id."""
        return self.training.run_id


@dataclass(frozen=True)
class PackagedModel:
    """A training run with its pyfunc recommender logged, and the served-slate metrics logged beside it."""

    run_id: str
    served: dict[str, float]


@dataclass(frozen=True)
class SimulationOutcome:
    """The candidate's simulation run and its lift over the control, or why no simulation ran."""

    cache: str
    run_id: str | None = None
    policy: str = ""
    control: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    gate_metric: str = ""
    recommender: Any = None
    runtime_s: float | None = None
    skipped: str = ""

    @classmethod
    def skipped_because(cls, reason: str) -> SimulationOutcome:
        """A simulation that did not run, and why."""
        return cls(cache="skipped", skipped=reason)

    def to_summary(self) -> dict[str, Any]:
        """The JSON summary of the simulation (only the reason when it was skipped)."""
        if self.skipped:
            return {"skipped": self.skipped, "cache": self.cache}
        return {
            "run_id": self.run_id,
            "policy": self.policy,
            "control": self.control,
            "metrics": self.metrics,
            "gate_metric": self.gate_metric,
            "recommender": self.recommender,
            "runtime_s": self.runtime_s,
            "cache": self.cache,
        }


@dataclass(frozen=True)
class RegistrationOutcome:
    """A registered version, its gate decision against the champion, and the aliases after it."""

    registered_model: str
    version: str
    gate_passed: bool
    gate_reasons: list[str]
    decision_markdown: str
    challenger: str | None
    champion: str | None
    cache: str
    ope: dict[str, float] = field(default_factory=dict)
    """The off-policy evaluation on logged traffic made before the gates (empty without logged traffic)."""

    def to_summary(self) -> dict[str, Any]:
        """The JSON summary the `register` command prints (the decision's Markdown included)."""
        return asdict(self)


@dataclass(frozen=True)
class PromotionOutcome:
    """What a promotion did: its outcome, whether `champion` moved, and the decision behind it."""

    registered_model: str
    version: str
    outcome: str
    promoted: bool
    champion: str | None
    gate_reasons: list[str]
    decision_markdown: str
    interrupted: list[str] = field(default_factory=list)  # earlier attempts cut off by a crash

    def to_summary(self) -> dict[str, Any]:
        """The JSON summary the `promote` command prints (the decision's Markdown included)."""
        return asdict(self)
