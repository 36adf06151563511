"""The policy specification: which policy at which exploration rate, with its parameters, and its builder."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from explorec.policies.registry import policy_class

if TYPE_CHECKING:
    import numpy as np

    from explorec.config.schema import PolicyConfig
    from explorec.policies.base import Policy


@dataclass(frozen=True)
class PolicySpec:
    """A registered policy's name, its exploration_rate and JSON-able keyword parameters."""

    name: str = "epsilon_greedy"
    exploration_rate: float = 0.1
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, policy: PolicyConfig) -> PolicySpec:
        """The config's policy with the knobs its class uses (feedback weight, candidates, clusters)."""
        policy_type = policy_class(policy.name)
        params: dict[str, Any] = {}
        if policy_type.learns_linear_model:
            params["feedback_weight"] = policy.feedback_weight
        if policy_type.reranks_candidates:
            params["n_candidates"] = policy.n_candidates
        if policy_type.clusters_text:
            params["n_clusters"] = policy.n_clusters
        return cls(policy.name, policy.exploration_rate, params)

    @property
    def policy_class(self) -> type[Policy]:
        """The registered class this spec builds."""
        return policy_class(self.name)

    def vector_resources(
        self, *, item_vectors: np.ndarray, text_embeddings: np.ndarray | None
    ) -> dict[str, np.ndarray]:
        """The item vectors and text embeddings this policy is built on, as keyword arguments of `build`."""
        policy_type = self.policy_class
        resources: dict[str, np.ndarray] = {}
        if policy_type.uses_item_vectors:
            resources["item_vectors"] = item_vectors
        if policy_type.uses_text_embeddings:
            if text_embeddings is None:
                raise ValueError(f"policy {self.name!r} needs text embeddings")
            resources["text_embeddings"] = text_embeddings
        return resources

    def history_resources(
        self, *, history_items: np.ndarray, history_offsets: np.ndarray
    ) -> dict[str, np.ndarray]:
        """The training histories (CSR, oldest first) as keyword arguments of `build`, if the policy learns
        cluster transitions from them ({} otherwise)."""
        if not self.policy_class.learns_cluster_transitions:
            return {}
        return {"history_items": history_items, "history_offsets": history_offsets}

    def build(self, **resources: Any) -> Policy:
        """Build the policy from `resources` (item_vectors, text_embeddings, item_clusters, ...) and `params`.

        Both are the class's keyword arguments, `params` winning; unknown names or arguments raise
        ValueError/TypeError.
        """
        arguments = {**resources, **self.params}
        return self.policy_class(exploration_rate=self.exploration_rate, **arguments)
