"""Per-user online Bayesian linear model of the residual of a calibrated prior, batched across users.

Expected click at slot k of item i: θ_k·(prior_i + x_iᵀw), x_i = [1, v_i] (v_i the item vector). Each served
slot gives an observation with features θ_k·x_i and target click − θ_k·prior_i. With noise std σ and prior
w ~ N(0, τ²I), in units of σ²: A = (σ²/τ²)·I + Σ f fᵀ, b = Σ f·y, posterior mean ŵ = A⁻¹b, covariance σ²A⁻¹.
A⁻¹ is updated by Sherman–Morrison, one rank-1 step per slot, for every user at once. The state of user u,
`LinearUserState(a_inverse=A⁻¹[u], b=b[u])`, shares memory with the batch, so linucb/thompson (built on the
same augmented vectors x_i, scores = prior) see exactly this model.
"""

from __future__ import annotations

import numpy as np

from explorec.policies.linear import LinearUserState


def augmented_vectors(item_vectors: np.ndarray) -> np.ndarray:
    """x_i = [1, v_i] (n_items, d + 1)."""
    return np.column_stack([np.ones(item_vectors.shape[0]), np.asarray(item_vectors, np.float64)])


class OnlineResidualModel:
    """Batched posterior (A⁻¹, b) of n_users per-user residual models."""

    def __init__(self, *, features: np.ndarray, n_users: int, noise_std: float, prior_std: float) -> None:
        if noise_std <= 0 or prior_std <= 0:
            raise ValueError("noise_std and prior_std must be positive")
        self.features = np.asarray(features, np.float64)
        self._features_t = np.ascontiguousarray(self.features.T)
        dimension = self.features.shape[1]
        self.prior_precision = (noise_std / prior_std) ** 2
        self.a_inverse = np.tile(np.eye(dimension) / self.prior_precision, (n_users, 1, 1))
        self.b = np.zeros((n_users, dimension))

    def weights(self) -> np.ndarray:
        """Posterior means ŵ (n_users, d + 1)."""
        return (self.a_inverse @ self.b[:, :, None])[:, :, 0]

    def mean_scores(self, prior: np.ndarray) -> np.ndarray:
        """Posterior mean click probability at weight 1: prior + x_iᵀŵ_u (n_users, n_items)."""
        return prior + self.weights() @ self._features_t

    def user_state(self, row: int) -> LinearUserState:
        """User `row`'s state as a LinearUserState sharing this model's memory."""
        return LinearUserState(a_inverse=self.a_inverse[row], b=self.b[row])

    def observe(
        self, *, items: np.ndarray, clicks: np.ndarray, prior: np.ndarray, position_weights: np.ndarray
    ) -> None:
        """One rank-1 update per slot for all users: features θ_k·x_item, target click − θ_k·prior_item."""
        rows = np.arange(items.shape[0])
        for slot in range(items.shape[1]):
            weight = position_weights[slot]
            feature = weight * self.features[items[:, slot]]
            target = clicks[:, slot] - weight * prior[rows, items[:, slot]]
            a_inv_f = (self.a_inverse @ feature[:, :, None])[:, :, 0]
            scaled = a_inv_f / (1.0 + np.einsum("ui,ui->u", feature, a_inv_f))[:, None]
            self.a_inverse -= scaled[:, :, None] * a_inv_f[:, None, :]
            self.b += feature * target[:, None]
