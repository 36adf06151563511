"""LinUCB and Thompson sampling on item-tower vectors with a per-user Bayesian linear model of the residual.

Model (per user): reward(i) = score(i) + x_iᵀθ + noise, θ ~ N(0, λ⁻¹ I) a priori, x_i the item-tower vector.
So `scores` must be on the reward scale (calibrated click probabilities); the model learns reward − score.
After n observed (x, y = reward − score) pairs, A = λI + Σ x xᵀ, b = Σ x y, posterior mean θ̂ = A⁻¹ b and
posterior covariance ∝ A⁻¹. A⁻¹ is kept and updated by Sherman–Morrison (rank 1 per observation).
Posterior mean score of item i: μ_i = score(i) + x_iᵀθ̂. Both policies consider only the top M items by μ.
The greedy slate (for δ) is the top k by μ, so rate 0 equals greedy on scores until the first update.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from explorec.policies.base import (
    Policy,
    Slate,
    SlateBatch,
    UserState,
    allowed_score_rows,
    allowed_scores,
    best_remaining_items,
    check_logged_slate,
    slots_off_greedy,
    slots_off_greedy_rows,
    top_k_indices,
    top_k_rows,
)


@dataclass
class LinearUserState:
    """A user's posterior: inverse precision A⁻¹ (d, d) and b = Σ x·(reward − score) (d,)."""

    a_inverse: np.ndarray
    b: np.ndarray

    @classmethod
    def prior(cls, *, dimension: int, prior_precision: float) -> LinearUserState:
        """The prior state: A = λI, b = 0."""
        return cls(a_inverse=np.eye(dimension) / prior_precision, b=np.zeros(dimension))

    @property
    def theta_mean(self) -> np.ndarray:
        """Posterior mean θ̂ = A⁻¹ b."""
        return self.a_inverse @ self.b

    def observe(self, *, features: np.ndarray, target: float) -> None:
        """Add one observation: A += x xᵀ (Sherman–Morrison on A⁻¹), b += x·target."""
        a_inv_x = self.a_inverse @ features
        self.a_inverse -= np.outer(a_inv_x, a_inv_x) / (1.0 + features @ a_inv_x)
        self.b += features * target


class _LinearModelPolicy(Policy):
    """Shared parts of LinUCB and Thompson: state, updates, posterior means and the top-M candidates."""

    reward_scale_scores = True
    uses_item_vectors = True
    reranks_candidates = True
    learns_linear_model = True

    def __init__(
        self,
        *,
        exploration_rate: float,
        item_vectors: np.ndarray,
        prior_precision: float = 1.0,
        n_candidates: int = 100,
        exploration_scale: float | None = None,
        feedback_weight: float = 1.0,
    ) -> None:
        super().__init__(exploration_rate=exploration_rate)
        if prior_precision <= 0 or n_candidates < 1 or feedback_weight <= 0:
            raise ValueError(
                "prior_precision and feedback_weight must be positive and n_candidates at least 1"
            )
        self.item_vectors = np.asarray(item_vectors, dtype=np.float64)
        self.prior_precision = float(prior_precision)
        self.feedback_weight = float(feedback_weight)
        self.n_candidates = int(n_candidates)
        self.exploration_scale = exploration_scale

    def initial_state(self, *, history_items: np.ndarray) -> LinearUserState:
        """The prior posterior (the visible history is already in the scores)."""
        del history_items
        return LinearUserState.prior(
            dimension=self.item_vectors.shape[1], prior_precision=self.prior_precision
        )

    def update(
        self, *, state: UserState | None, items: np.ndarray, rewards: np.ndarray, scores: np.ndarray
    ) -> None:
        """Rank-1 update per served item with target reward − score, counted `feedback_weight` times.

        A weight w adds w·x xᵀ to A and w·x·(reward − score) to b (an observation noise variance of 1/w):
        below 1 the posterior mean moves less per observation while the prior, and so the first slate's
        exploration, stays as it is.
        """
        if not isinstance(state, LinearUserState):
            raise ValueError(
                f"{self.name} needs the LinearUserState from initial_state, got {type(state).__name__}"
            )
        root = np.sqrt(self.feedback_weight)
        for item, reward in zip(np.asarray(items), np.asarray(rewards, dtype=np.float64), strict=True):
            state.observe(features=root * self.item_vectors[item], target=root * float(reward - scores[item]))

    def _candidates(
        self, scores: np.ndarray, excluded: np.ndarray, k: int, state: LinearUserState | None
    ) -> tuple[LinearUserState, np.ndarray, np.ndarray]:
        """The state to use, the top-M candidate items by posterior mean (descending) and their means."""
        if scores.shape[0] != self.item_vectors.shape[0]:
            raise ValueError(
                f"scores cover {scores.shape[0]} items, item_vectors {self.item_vectors.shape[0]}"
            )
        allowed = allowed_scores(scores, excluded, k)
        state = state if state is not None else self.initial_state(history_items=np.empty(0, np.int64))
        means = allowed + self.item_vectors @ state.theta_mean
        n_allowed = int(np.isfinite(allowed).sum())
        candidates = top_k_indices(means, max(k, min(self.n_candidates, n_allowed)))
        return state, candidates, means[candidates]

    def _scale(self, candidate_means: np.ndarray) -> float:
        """Exploration scale at rate 1: `exploration_scale`, or the std of candidate means (1.0 when 0)."""
        if self.exploration_scale is not None:
            return float(self.exploration_scale)
        spread = float(np.std(candidate_means))
        return spread if spread > 0 else 1.0

    def _batch_candidates(
        self, scores: np.ndarray, excluded: np.ndarray, k: int, states: Sequence[UserState | None] | None
    ) -> tuple[list[LinearUserState], np.ndarray, np.ndarray] | None:
        """Batch `_candidates`: (states, candidates (n, M), their means), or None when M differs by row."""
        allowed = allowed_score_rows(scores, excluded, k)
        n_rows, n_items = allowed.shape
        if n_items != self.item_vectors.shape[0]:
            raise ValueError(f"scores cover {n_items} items, item_vectors {self.item_vectors.shape[0]}")
        sizes = np.maximum(k, np.minimum(self.n_candidates, np.isfinite(allowed).sum(axis=1)))
        if n_rows == 0 or (sizes != sizes[0]).any():
            return None
        states = [None] * n_rows if states is None else list(states)
        if len(states) != n_rows:
            raise ValueError(f"{len(states)} states for {n_rows} rows of scores")
        empty = np.empty(0, np.int64)
        states = [self.initial_state(history_items=empty) if s is None else s for s in states]
        # Row by row (as `_candidates`): a matrix-vector product per user keeps the per-user bits exactly.
        means = np.stack(
            [row + self.item_vectors @ state.theta_mean for row, state in zip(allowed, states, strict=True)]
        )
        candidates = top_k_rows(means, int(sizes[0]))
        return states, candidates, np.take_along_axis(means, candidates, axis=1)

    def _batch_scales(self, candidate_means: np.ndarray) -> np.ndarray:
        """`_scale` of every row of candidate means, as a column (n, 1)."""
        if self.exploration_scale is not None:
            return np.full((candidate_means.shape[0], 1), float(self.exploration_scale))
        spread = np.std(candidate_means, axis=1, keepdims=True)
        return np.where(spread > 0, spread, 1.0)


class LinUCBPolicy(_LinearModelPolicy):
    """Top k among the top-M candidates by μ_i + α·sqrt(x_iᵀA⁻¹x_i); deterministic, propensity 1.

    α = exploration_rate · scale, scale = `exploration_scale` or the std of the candidates' posterior means.
    With unit-norm item vectors and no updates the bonus is equal for all items, so LinUCB starts greedy.
    """

    name = "linucb"

    def _ranking(
        self, scores: np.ndarray, excluded: np.ndarray, k: int, state: LinearUserState | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(candidates by descending upper confidence bound, candidates by descending posterior mean)."""
        state, candidates, means = self._candidates(scores, excluded, k, state)
        vectors = self.item_vectors[candidates]
        width = np.sqrt(np.maximum(np.einsum("ij,ij->i", vectors @ state.a_inverse, vectors), 0.0))
        alpha = self.exploration_rate * self._scale(means)
        return candidates[top_k_indices(means + alpha * width, candidates.size)], candidates

    def select(
        self, *, scores: np.ndarray, excluded: np.ndarray, k: int, rng: np.random.Generator,
        state: UserState | None = None,
    ) -> Slate:
        """Serve the k highest upper confidence bounds among the top-M candidates."""
        ranked, candidates = self._ranking(scores, excluded, k, state)
        items, greedy = ranked[:k], candidates[:k]
        return Slate(items, np.ones(k), slots_off_greedy(items, greedy), greedy)

    def select_batch(
        self, *, scores: np.ndarray, excluded: np.ndarray, k: int, rng: np.random.Generator,
        states: Sequence[UserState | None] | None = None,
    ) -> SlateBatch:
        """Serve every row at once: the same slates and flags as `select` row by row."""
        batch = self._batch_candidates(scores, excluded, k, states)
        if batch is None:  # rows with different candidate counts: serve them one by one
            return super().select_batch(scores=scores, excluded=excluded, k=k, rng=rng, states=states)
        states, candidates, means = batch
        vectors = self.item_vectors[candidates]
        a_inverse = np.stack([state.a_inverse for state in states])
        width = np.sqrt(np.maximum(np.einsum("uij,uij->ui", vectors @ a_inverse, vectors), 0.0))
        alpha = self.exploration_rate * self._batch_scales(means)
        items = np.take_along_axis(candidates, top_k_rows(means + alpha * width, k), axis=1)
        greedy = candidates[:, :k]
        n_items = self.item_vectors.shape[0]
        return SlateBatch(items, np.ones(items.shape), slots_off_greedy_rows(items, greedy, n_items), greedy)

    def slate_propensities(
        self, *, scores: np.ndarray, excluded: np.ndarray, items: np.ndarray, state: UserState | None = None,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """1 where the logged item has the highest bound among the remaining candidates, else 0."""
        items = check_logged_slate(items, np.asarray(excluded))
        ranked, _ = self._ranking(scores, excluded, items.size, state)
        return (items == best_remaining_items(ranked, items)).astype(np.float64)


class ThompsonPolicy(_LinearModelPolicy):
    """Top k among the top-M candidates by x_iᵀθ̃ + score(i), θ̃ ~ N(θ̂, s²A⁻¹), s = rate · scale.

    scale = `exploration_scale` or the std of the candidates' posterior means. Propensities have no closed
    form: each is a Monte Carlo estimate from `propensity_draws` fresh posterior draws plus the served draw,
    propensity[s] = (1 + #draws whose top s+1 equal the slate's) / (1 + #draws whose top s equal the slate's);
    always in (0, 1], consistent as the draws grow. `propensity_draws=0` logs NaN instead (no estimate).
    """

    name = "thompson"

    def __init__(
        self,
        *,
        exploration_rate: float,
        item_vectors: np.ndarray,
        prior_precision: float = 1.0,
        n_candidates: int = 100,
        exploration_scale: float | None = None,
        propensity_draws: int = 256,
        feedback_weight: float = 1.0,
    ) -> None:
        super().__init__(
            exploration_rate=exploration_rate,
            item_vectors=item_vectors,
            prior_precision=prior_precision,
            n_candidates=n_candidates,
            exploration_scale=exploration_scale,
            feedback_weight=feedback_weight,
        )
        self.propensity_draws = int(propensity_draws)

    def _draws(
        self,
        scores: np.ndarray,
        excluded: np.ndarray,
        k: int,
        state: LinearUserState | None,
        n_draws: int,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(candidates by descending mean, (n_draws, M) sampled scores or None when the scale is 0)."""
        state, candidates, means = self._candidates(scores, excluded, k, state)
        noise_scale = self.exploration_rate * self._scale(means)
        if noise_scale == 0.0:
            return candidates, None
        projected = self.item_vectors[candidates] @ _covariance_factor(state.a_inverse)
        noise = rng.standard_normal((n_draws, projected.shape[1])) @ projected.T
        return candidates, means[None, :] + noise_scale * noise

    def select_batch(
        self, *, scores: np.ndarray, excluded: np.ndarray, k: int, rng: np.random.Generator,
        states: Sequence[UserState | None] | None = None,
    ) -> SlateBatch:
        """Serve every row at once: the same slates, propensities and flags as `select` row by row.

        The normal draws of all rows come from one call, which yields the per-row calls' numbers in order.
        """
        batch = self._batch_candidates(scores, excluded, k, states)
        if batch is None:  # rows with different candidate counts: serve them one by one
            return super().select_batch(scores=scores, excluded=excluded, k=k, rng=rng, states=states)
        states, candidates, means = batch
        greedy = candidates[:, :k]
        noise_scale = self.exploration_rate * self._batch_scales(means)
        if (noise_scale == 0.0).all():
            shape = greedy.shape
            return SlateBatch(greedy, np.ones(shape), np.zeros(shape, bool), greedy)
        if (noise_scale == 0.0).any():  # rows without draws: serve one by one to keep the draw order
            return super().select_batch(scores=scores, excluded=excluded, k=k, rng=rng, states=states)
        n_rows, dimension = candidates.shape[0], self.item_vectors.shape[1]
        factors = _covariance_factors(np.stack([state.a_inverse for state in states]))
        projected = self.item_vectors[candidates] @ factors
        normals = rng.standard_normal((n_rows, 1 + self.propensity_draws, dimension))
        draws = means[:, None, :] + noise_scale[:, :, None] * (normals @ projected.transpose(0, 2, 1))
        served = top_k_rows(draws[:, 0], k)
        items = np.take_along_axis(candidates, served, axis=1)
        if self.propensity_draws == 0:
            propensities = np.full(items.shape, np.nan)
        else:
            matching, before = _prefix_match_counts_rows(draws, served)
            propensities = matching / before  # the served draw matches, so before ≥ 1
        n_items = self.item_vectors.shape[0]
        return SlateBatch(items, propensities, slots_off_greedy_rows(items, greedy, n_items), greedy)

    def select(
        self, *, scores: np.ndarray, excluded: np.ndarray, k: int, rng: np.random.Generator,
        state: UserState | None = None,
    ) -> Slate:
        """Serve the top k of one posterior draw; propensities by Monte Carlo."""
        candidates, draws = self._draws(scores, excluded, k, state, 1 + self.propensity_draws, rng)
        greedy = candidates[:k]
        if draws is None:
            return Slate(greedy, np.ones(k), np.zeros(k, bool), greedy)
        served = top_k_indices(draws[0], k)
        items = candidates[served]
        if self.propensity_draws == 0:
            propensities = np.full(k, np.nan)
        else:
            matching, before = _prefix_match_counts(draws, served)
            propensities = matching / before  # the served draw matches, so before ≥ 1
        return Slate(items, propensities, slots_off_greedy(items, greedy), greedy)

    def slate_propensities(
        self, *, scores: np.ndarray, excluded: np.ndarray, items: np.ndarray, state: UserState | None = None,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Monte Carlo estimate from `propensity_draws` fresh draws; NaN where no draw matches the prefix."""
        items = check_logged_slate(items, np.asarray(excluded))
        if rng is None:
            raise ValueError("thompson needs a numpy Generator (rng) to estimate propensities")
        candidates, draws = self._draws(scores, excluded, items.size, state, self.propensity_draws, rng)
        if draws is None:
            return (items == best_remaining_items(candidates, items)).astype(np.float64)
        position = {int(item): index for index, item in enumerate(candidates)}
        logged = np.array([position.get(int(item), -1) for item in items])
        matching, before = _prefix_match_counts(draws, logged)
        return np.divide(matching, before, out=np.full(items.size, np.nan), where=before > 0)


def _prefix_match_counts(draw_scores: np.ndarray, slate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per slot s, (#draws whose top s+1 equal slate[:s+1], #draws whose top s equal slate[:s])."""
    matching, before = _prefix_match_counts_rows(draw_scores[None, :, :], np.asarray(slate)[None, :])
    return matching[0], before[0]


def _prefix_match_counts_rows(draw_scores: np.ndarray, slates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batch `_prefix_match_counts`: draw_scores (n, draws, M), slates (n, k) → two (n, k) count arrays.

    Draws rank candidates as `top_k_indices` does (by score, ties to the lower position), the rule the
    served slate was chosen by, so the served draw always matches its own slate even when candidates tie.
    A draw's top s+1 equal slate[:s+1] iff each slate[j], j ≤ s, outranks every later slate item and every
    candidate outside the slate. Slate entries outside [0, M) (items that are not candidates) never match.
    """
    n_rows, n_draws, n_candidates = draw_scores.shape
    valid = (slates >= 0) & (slates < n_candidates)
    positions = np.where(valid, slates, n_candidates)  # a non-candidate points at an extra -inf column
    extended = np.concatenate([draw_scores, np.full((n_rows, n_draws, 1), -np.inf)], axis=2)
    index = np.broadcast_to(positions[:, None, :], (n_rows, n_draws, slates.shape[1]))
    values = np.take_along_axis(extended, index, axis=2)
    np.put_along_axis(extended, index, -np.inf, axis=2)
    outside_position = np.argmax(extended, axis=2)  # the best candidate outside the slate (lowest on ties)
    outside_value = np.take_along_axis(extended, outside_position[:, :, None], axis=2)
    tied_earlier = (values == outside_value) & (positions[:, None, :] < outside_position[:, :, None])
    beats_outside = (values > outside_value) | tied_earlier
    later_value, later_position = values[:, :, None, :], positions[:, None, None, :]
    beats = (values[:, :, :, None] > later_value) | (
        (values[:, :, :, None] == later_value) & (positions[:, None, :, None] < later_position)
    )
    later = np.triu(np.ones((slates.shape[1],) * 2, dtype=bool), k=1)
    first_among_rest = beats_outside & (beats | ~later).all(axis=3) & valid[:, None, :]
    matching = np.cumprod(first_among_rest, axis=2).astype(bool).sum(axis=1).astype(np.float64)
    before = np.concatenate([np.full((n_rows, 1), float(n_draws)), matching[:, :-1]], axis=1)
    return matching, before


def _covariance_factor(covariance: np.ndarray) -> np.ndarray:
    """L with L Lᵀ = covariance: Cholesky of its symmetric part, or an eigen-factor if rounding broke it."""
    symmetric = 0.5 * (covariance + covariance.T)
    try:
        return np.linalg.cholesky(symmetric)
    except np.linalg.LinAlgError:
        eigenvalues, eigenvectors = np.linalg.eigh(symmetric)
        return eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))


def _covariance_factors(covariances: np.ndarray) -> np.ndarray:
    """`_covariance_factor` of each matrix of a stack (n, d, d)."""
    symmetric = 0.5 * (covariances + covariances.transpose(0, 2, 1))
    try:
        return np.linalg.cholesky(symmetric)
    except np.linalg.LinAlgError:
        return np.stack([_covariance_factor(covariance) for covariance in covariances])
