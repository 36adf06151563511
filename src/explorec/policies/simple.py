"""Score-only policies: greedy, ε-greedy and Boltzmann (Plackett-Luce), each with a vectorised batch path.

Batch paths draw from the Generator in a different order than per-user calls, so a batch equals per-user
calls in distribution, not draw for draw.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from explorec.policies.base import (
    Policy,
    Slate,
    SlateBatch,
    UserState,
    allowed_score_rows,
    allowed_scores,
    best_remaining_items,
    best_remaining_laws,
    check_logged_slate,
    first_untaken_rows,
    slots_off_greedy,
    slots_off_greedy_rows,
    top_k_indices,
    top_k_rows,
)

__all__ = ["BoltzmannPolicy", "EpsilonGreedyPolicy", "GreedyPolicy", "top_k_rows"]


def _first_untaken(ranked: np.ndarray, taken: set[int]) -> int:
    """First item of `ranked` that is not in `taken`."""
    for item in ranked:
        if int(item) not in taken:
            return int(item)
    raise ValueError("every ranked item is already taken")


class GreedyPolicy(Policy):
    """Top-k by score; no exploration (exploration_rate is ignored and kept for a uniform interface)."""

    name = "greedy"

    def select(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        k: int,
        rng: np.random.Generator,
        state: UserState | None = None,
    ) -> Slate:
        """Serve the k best non-excluded items; propensity 1 per slot."""
        items = top_k_indices(allowed_scores(scores, excluded, k), k)
        return Slate(items=items, propensities=np.ones(k), explored=np.zeros(k, bool), greedy_items=items)

    def slate_propensities(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        items: np.ndarray,
        state: UserState | None = None,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """1 where the logged item is the best remaining item by score, else 0."""
        items = check_logged_slate(items, np.asarray(excluded))
        greedy = top_k_indices(allowed_scores(scores, excluded, items.size), items.size)
        return (items == best_remaining_items(greedy, items)).astype(np.float64)

    def slot_laws(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        items: np.ndarray,
        state: UserState | None = None,
    ) -> Iterator[np.ndarray]:
        """Each slot: all mass on the best remaining item after items[:s]."""
        items = check_logged_slate(items, np.asarray(excluded))
        greedy = top_k_indices(allowed_scores(scores, excluded, items.size), items.size)
        return best_remaining_laws(greedy, items, np.asarray(excluded).size)

    def select_batch(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        k: int,
        rng: np.random.Generator,
        states: Sequence[UserState | None] | None = None,
    ) -> SlateBatch:
        """Serve the k best non-excluded items of every row at once."""
        items = top_k_rows(allowed_score_rows(scores, excluded, k), k)
        shape = items.shape
        return SlateBatch(items, np.ones(shape), np.zeros(shape, bool), items)


class EpsilonGreedyPolicy(Policy):
    """ε-greedy per slot, ε = exploration_rate.

    Each slot independently explores with probability ε: a uniformly random non-excluded item not yet in the
    slate; otherwise the best remaining item by score. With n_remaining = items still available at that slot,
    the propensity is (1 - ε)·1[item is the best remaining] + ε / n_remaining (exact).
    `explored[s]` is True when the random branch was taken (even if it drew the best item).
    """

    name = "epsilon_greedy"

    def select(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        k: int,
        rng: np.random.Generator,
        state: UserState | None = None,
    ) -> Slate:
        """Serve k items, each slot exploring with probability ε."""
        allowed = allowed_scores(scores, excluded, k)
        greedy = top_k_indices(allowed, k)
        epsilon = self.exploration_rate
        candidates = np.flatnonzero(np.isfinite(allowed))
        explore = rng.random(k) < epsilon
        items = np.empty(k, dtype=np.int64)
        propensities = np.empty(k)
        taken: set[int] = set()
        for slot in range(k):
            best = _first_untaken(greedy, taken)
            item = best
            if explore[slot]:
                item = int(candidates[rng.integers(candidates.size)])
                while item in taken:
                    item = int(candidates[rng.integers(candidates.size)])
            n_remaining = candidates.size - slot
            propensities[slot] = epsilon / n_remaining + (1.0 - epsilon) * (item == best)
            items[slot] = item
            taken.add(item)
        return Slate(items=items, propensities=propensities, explored=explore, greedy_items=greedy)

    def slate_propensities(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        items: np.ndarray,
        state: UserState | None = None,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """(1 − ε)·1[best remaining] + ε / n_remaining for each logged slot (0 for an excluded item)."""
        excluded = np.asarray(excluded, dtype=bool)
        items = check_logged_slate(items, excluded)
        allowed = allowed_scores(scores, excluded, items.size)
        best = best_remaining_items(top_k_indices(allowed, items.size), items)
        n_remaining = int(np.count_nonzero(~excluded)) - np.arange(items.size)
        epsilon = self.exploration_rate
        return epsilon * ~excluded[items] / n_remaining + (1.0 - epsilon) * (items == best)

    def slot_laws(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        items: np.ndarray,
        state: UserState | None = None,
    ) -> Iterator[np.ndarray]:
        """Slot s: ε / n_remaining on every allowed item not in items[:s], plus 1 − ε on the best of them."""
        excluded = np.asarray(excluded, dtype=bool)
        items = check_logged_slate(items, excluded)
        greedy = top_k_indices(allowed_scores(scores, excluded, items.size), items.size)
        best = best_remaining_items(greedy, items)
        epsilon = self.exploration_rate

        def laws() -> Iterator[np.ndarray]:
            available = ~excluded
            for slot in range(items.size):
                if slot:
                    available[items[slot - 1]] = False
                law = (epsilon / available.sum()) * available
                law[best[slot]] += 1.0 - epsilon
                yield law

        return laws()

    def select_batch(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        k: int,
        rng: np.random.Generator,
        states: Sequence[UserState | None] | None = None,
    ) -> SlateBatch:
        """Serve every row at once; same per-slot law and propensities as `select`."""
        allowed = allowed_score_rows(scores, excluded, k)
        n_rows = allowed.shape[0]
        rows = np.arange(n_rows)
        greedy = top_k_rows(allowed, k)
        epsilon = self.exploration_rate
        is_allowed = np.isfinite(allowed)
        n_allowed = is_allowed.sum(axis=1)
        # Allowed item ids first in each row, so a uniform draw is an index below n_allowed.
        allowed_first = np.argsort(~is_allowed, axis=1, kind="stable")
        explore = rng.random((n_rows, k)) < epsilon
        chosen = np.zeros(allowed.shape, dtype=bool)
        items = np.empty((n_rows, k), dtype=np.int64)
        propensities = np.empty((n_rows, k))
        for slot in range(k):
            best = first_untaken_rows(greedy, chosen)
            item = best.copy()
            pending = np.flatnonzero(explore[:, slot])
            while pending.size:
                draw = allowed_first[
                    pending, (rng.random(pending.size) * n_allowed[pending]).astype(np.int64)
                ]
                fresh = ~chosen[pending, draw]
                item[pending[fresh]] = draw[fresh]
                pending = pending[~fresh]
            propensities[:, slot] = epsilon / (n_allowed - slot) + (1.0 - epsilon) * (item == best)
            items[:, slot] = item
            chosen[rows, item] = True
        return SlateBatch(items, propensities, explore, greedy)


class BoltzmannPolicy(Policy):
    """Plackett-Luce sampling without replacement via Gumbel-top-k on scores / τ.

    τ = temperature_scale · rate / (1 - rate): rate 0 is greedy, rate 1 is uniform, rate 0.5 gives
    τ = temperature_scale. `temperature_scale=None` uses the standard deviation of the user's non-excluded
    scores (1.0 when they are all equal), which makes the knob independent of the score scale.
    Propensity of slot s (exact) = exp(score/τ) / Σ_{items still available at s} exp(score_j/τ).
    `explored[s]` is True when the slot's item is not the best remaining item by score.
    """

    name = "boltzmann"

    def __init__(self, *, exploration_rate: float, temperature_scale: float | None = None) -> None:
        super().__init__(exploration_rate=exploration_rate)
        if temperature_scale is not None and temperature_scale <= 0:
            raise ValueError(f"temperature_scale must be positive, got {temperature_scale}")
        self.temperature_scale = temperature_scale

    def _scaled_logits(self, allowed: np.ndarray) -> np.ndarray:
        """Rows of (score - row max) / τ, -inf where excluded; τ as in the class docstring (0 < rate < 1)."""
        finite = np.isfinite(allowed)
        if self.exploration_rate == 1.0:
            return np.where(finite, 0.0, -np.inf)
        if self.temperature_scale is None and finite.all():
            scale = np.std(allowed, axis=-1, keepdims=True)
            scale = np.where(scale > 0, scale, 1.0)
        elif self.temperature_scale is None:
            scale = np.nanstd(np.where(finite, allowed, np.nan), axis=-1, keepdims=True)
            scale = np.where(scale > 0, scale, 1.0)
        else:
            scale = self.temperature_scale
        rate = self.exploration_rate
        temperature = scale * rate / (1.0 - rate)
        row_max = np.max(allowed, axis=-1, keepdims=True)
        return np.where(finite, (allowed - row_max) / temperature, -np.inf)

    @staticmethod
    def _slot_propensities(logits: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Per row, softmax weight of each slot's item over the items still available at that slot."""
        weights = np.exp(logits)
        picked = np.take_along_axis(weights, items, axis=-1)
        total = weights.sum(axis=-1, keepdims=True)
        remaining = total - (np.cumsum(picked, axis=-1) - picked)
        propensities = picked / np.where(remaining > 0, remaining, 1.0)
        # Subtraction loses precision when earlier picks held nearly all the mass: redo them in log space.
        for row, slot in zip(*np.nonzero(remaining < 1e-9 * total), strict=True):
            rest = logits[row].copy()
            rest[items[row, :slot]] = -np.inf
            top = rest.max()
            log_mass = top + np.log(np.exp(rest - top).sum())
            propensities[row, slot] = np.exp(logits[row, items[row, slot]] - log_mass)
        return propensities

    def select(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        k: int,
        rng: np.random.Generator,
        state: UserState | None = None,
    ) -> Slate:
        """Serve k items drawn by Plackett-Luce on scores / τ."""
        allowed = allowed_scores(scores, excluded, k)
        greedy = top_k_indices(allowed, k)
        if self.exploration_rate == 0.0:
            return Slate(greedy, np.ones(k), np.zeros(k, bool), greedy)
        candidates = np.flatnonzero(np.isfinite(allowed))
        logits = self._scaled_logits(allowed[candidates][None, :])
        picks = top_k_indices(logits[0] + rng.gumbel(size=candidates.size), k)
        items = candidates[picks]
        propensities = self._slot_propensities(logits, picks[None, :])[0]
        return Slate(items, propensities, slots_off_greedy(items, greedy), greedy)

    def slate_propensities(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        items: np.ndarray,
        state: UserState | None = None,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Softmax of score / τ over the items still available at each logged slot (0 if excluded)."""
        items = check_logged_slate(items, np.asarray(excluded))
        allowed = allowed_scores(scores, excluded, items.size)
        if self.exploration_rate == 0.0:
            greedy = top_k_indices(allowed, items.size)
            return (items == best_remaining_items(greedy, items)).astype(np.float64)
        return self._slot_propensities(self._scaled_logits(allowed[None, :]), items[None, :])[0]

    def slot_laws(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        items: np.ndarray,
        state: UserState | None = None,
    ) -> Iterator[np.ndarray]:
        """Slot s: the softmax of score / τ over the allowed items not in items[:s]."""
        excluded = np.asarray(excluded, dtype=bool)
        items = check_logged_slate(items, excluded)
        allowed = allowed_scores(scores, excluded, items.size)
        if self.exploration_rate == 0.0:
            return best_remaining_laws(top_k_indices(allowed, items.size), items, excluded.size)
        logits = self._scaled_logits(allowed[None, :])[0]

        def laws() -> Iterator[np.ndarray]:
            for slot in range(items.size):
                if slot:
                    logits[items[slot - 1]] = -np.inf
                weights = np.exp(logits - logits.max())
                yield weights / weights.sum()

        return laws()

    def select_batch(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        k: int,
        rng: np.random.Generator,
        states: Sequence[UserState | None] | None = None,
    ) -> SlateBatch:
        """Serve every row at once with Gumbel-top-k; exact Plackett-Luce propensities."""
        allowed = allowed_score_rows(scores, excluded, k)
        greedy = top_k_rows(allowed, k)
        rate = self.exploration_rate
        if rate == 0.0:
            shape = greedy.shape
            return SlateBatch(greedy, np.ones(shape), np.zeros(shape, bool), greedy)
        logits = self._scaled_logits(allowed)
        keys = logits + rng.gumbel(size=logits.shape)
        items = top_k_rows(keys, k)
        propensities = self._slot_propensities(logits, items)
        explored = slots_off_greedy_rows(items, greedy, allowed.shape[1])
        return SlateBatch(items, propensities, explored, greedy)
