"""Typed settings of the promotion gates and the registry (plain dataclasses, no heavy imports).

Metric keys are the MLflow-safe names the gates read from a candidate's metrics ('@' written as '_at_',
see `explorec.tracking.store.metric_name`): training logs `final/test/ndcg_at_10`, and
`explorec.serving.served.served_slate_metrics` returns `served/policy/...` keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MetricGate:
    """One gated metric: an absolute bound, and the most it may fall behind the champion.

    With `higher_is_better` the candidate needs value >= threshold and value >= champion - tolerance;
    otherwise (e.g. exposure Gini, 0 = equal exposure) value <= threshold and value <= champion + tolerance.
    `tolerance` is in the metric's own units (absolute, not relative).
    """

    metric: str = ""
    threshold: float = 0.0
    tolerance: float = 0.0
    higher_is_better: bool = True


@dataclass
class GatesConfig:
    """Promotion gates: accuracy and diversity of the candidate, absolute and against the champion.

    A candidate passes when every metric exists, is not NaN, clears its threshold (a floor, or a ceiling when
    higher_is_better is false) and, once there is a champion, is no worse than the champion's value by more
    than `tolerance` (absolute, in the metric's units). Metric keys are MLflow-safe names ('@' written
    '_at_').

    Defaults are floors that a trained two-tower on ML-100K (leave_last_out) clears with margin and that an
    untrained or collapsed model (a handful of items for everyone) fails.
    """

    ndcg_at_10: MetricGate = field(
        default_factory=lambda: MetricGate("final/test/ndcg_at_10", threshold=0.01, tolerance=0.005)
    )
    recall_at_20: MetricGate = field(
        default_factory=lambda: MetricGate("final/test/recall_at_20", threshold=0.03, tolerance=0.01)
    )
    intra_list_diversity: MetricGate = field(
        default_factory=lambda: MetricGate(
            "served/policy/intra_list_diversity", threshold=0.2, tolerance=0.05
        )
    )
    catalog_coverage: MetricGate = field(
        default_factory=lambda: MetricGate("served/policy/catalog_coverage", threshold=0.1, tolerance=0.05)
    )
    exposure_gini: MetricGate = field(
        default_factory=lambda: MetricGate(
            "served/policy/exposure_gini", threshold=0.95, tolerance=0.03, higher_is_better=False
        )
    )  # 0 = equal exposure; lower is better
    simulator_lift_metric: str = "sim/lift_ci_low"
    """Lower bound of the simulator's lift interval; when the candidate has it, it must be > 0."""
    require_simulator_lift: bool = False
    """Fail a candidate that has no simulator result at all."""
    ope_lift_metric: str = "ope/lift_ci_low"
    """Lower bound of the lift over logged traffic (`explorec evaluate-logs`), when the candidate has one."""
    ope_lift_tolerance: float = 0.0
    """How far below 0 that lower bound may be (clicks per slot)."""
    ope_min_effective_samples: float = 200.0
    """Fewest effective samples (Σw)²/Σw² for the off-policy estimate to count; fewer fails the gate."""

    def metric_gates(self) -> dict[str, MetricGate]:
        """Return the metric gates by rule name, in table order."""
        return {
            "ndcg_at_10": self.ndcg_at_10,
            "recall_at_20": self.recall_at_20,
            "intra_list_diversity": self.intra_list_diversity,
            "catalog_coverage": self.catalog_coverage,
            "exposure_gini": self.exposure_gini,
        }


@dataclass
class IndexConfig:
    """The faiss item index built at packaging: exact inner product below `exact_below` items, HNSW above."""

    exact_below: int = 100_000
    """Catalogues with fewer items get an exact `IndexFlatIP`; larger ones an HNSW graph."""
    hnsw_m: int = 32
    """Neighbours per HNSW node (memory and recall grow with it)."""
    ef_construction: int = 100
    """HNSW build-time search width."""
    ef_search: int = 1536
    """HNSW query-time search width (recall vs latency); at least the candidates asked for is used. On 1M
    random 64-d vectors two builds found 99.6% and 88.1% of the exact top 10 at 768, the second 98.3% at 1536
    with a request's p99 at 6.2 ms (docs/results.md, "Retrieval at catalogue scale")."""
    n_candidates: int = 500
    """Items the index retrieves per request (plus the excluded ones) for the policy to choose among."""
    retrieve_from: int = 50_000
    """Catalogues with at least this many items are served from the retrieved candidates; smaller ones score
    every item, so the policy explores the whole catalogue as the simulator and the served-slate metrics
    assume (docs/design.md §5b); off-policy evaluation replays either way as served."""
    recall_users: int = 1000
    """Known users whose vectors measure the index's recall@10 against exact search at packaging."""


@dataclass
class RegistryConfig:
    """Registry conventions: aliases, the lock that serialises promotions, the pyfunc's artifact name."""

    challenger_alias: str = "challenger"
    champion_alias: str = "champion"
    lock_dir: str = "mlruns/registry"
    """Folder of the promotion lock files (relative paths resolve under the project root)."""
    lock_timeout_s: float = 120.0
    unaudited_champion: str = "restore"
    """A champion moved around the gates (MLflow UI, API): `restore` the last gated one, or `record` the move
    as a forced promotion with a warning on the version page (`explorec.registry.guard`)."""
    model_artifact: str = "recommender"
    max_k: int = 100
    """Largest slate a serving request may ask for (bigger requests are rejected with a 4xx)."""
    index: IndexConfig = field(default_factory=IndexConfig)
    """The served item index (`explorec.serving.index`)."""
