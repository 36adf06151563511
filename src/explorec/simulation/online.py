"""Per-user online Bayesian linear model of the residual of a calibrated prior, batched across users.

Expected click at slot k of item i: θ_k·(prior_i + x_iᵀw), x_i = [1, v_i] (v_i the item vector). Each served
slot gives an observation with features θ_k·x_i and target click − θ_k·prior_i. With noise std σ and prior
w ~ N(0, τ²I), in units of σ²: A = (σ²/τ²)·I + Σ f fᵀ, b = Σ f·y, posterior mean ŵ = A⁻¹b, covariance σ²A⁻¹.
A⁻¹ is updated once per visit by the Woodbury identity (the slate's k rank-1 steps at once), for every user
at once. The state of user u, `LinearUserState(a_inverse=A⁻¹[u], b=b[u])`, shares memory with the batch, so
linucb/thompson (built on the same augmented vectors x_i, scores = prior) see exactly this model.
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
        """Add a visit's slots for all users: features θ_k·x_item, target click − θ_k·prior_item.

        One Woodbury step per visit (A⁻¹ ← A⁻¹ − G(I + F G)⁻¹Gᵀ, G = A⁻¹Fᵀ, F the visit's k feature rows)
        equals k Sherman–Morrison steps up to rounding, at a fraction of the memory traffic. A⁻¹ and b are
        updated in place, so the `user_state` views stay current.
        """
        rows = np.arange(items.shape[0])[:, None]
        weights = np.asarray(position_weights, np.float64)
        features = weights[None, :, None] * self.features[items]  # F (n_users, k, d)
        targets = clicks - weights[None, :] * prior[rows, items]  # (n_users, k)
        gain = self.a_inverse @ features.transpose(0, 2, 1)  # G = A⁻¹Fᵀ (n_users, d, k)
        inner = features @ gain  # F A⁻¹ Fᵀ (n_users, k, k)
        inner[:, np.arange(items.shape[1]), np.arange(items.shape[1])] += 1.0
        self.a_inverse -= gain @ np.linalg.solve(inner, gain.transpose(0, 2, 1))
        self.b += np.einsum("uk,ukd->ud", targets, features)
