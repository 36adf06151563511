"""Interest-transition exploration after Wang et al. (RecSys 2024, "LLMs for user interest exploration").

Their system asks a fine-tuned language model for a user's next *novel* interest cluster given the user's
recent clusters, then restricts retrieval to that cluster for the exploring slots. Here the clusters are the
k-means clusters of the text embeddings (those semantic_cluster uses) and the model of the next cluster is
learned from the training histories: N[a, b] counts consecutive history items whose cluster changes from a
to b, and P(b | a) = (N[a, b] + α) / Σ_{b' ≠ a} (N[a, b'] + α) (add-α smoothing, no self-transitions).

Per slate: the user's context is the clusters of their latest `context_length` engaged items (history, then
clicks); the novel clusters (not engaged, with an item left) are weighted q_b ∝ Σ_{a in context} P(b | a)
(∝ smoothed inflow Σ_a N[a, b] + α without a context); one cluster c* ~ q is proposed for the slate. Each
slot independently explores with probability `exploration_rate`; an exploring slot gets c*'s best remaining
item by score (the best remaining item overall once c* has none left), the other slots the best remaining
item overall. Clicks make a cluster engaged and move the context, so the next proposal follows from it.

Propensities (exact): with g_s the best remaining item at slot s and e_{c,s} the item an exploring slot
would take if c* = c, P(item at s | earlier slots) = Σ_c w_{c,s}·[(1 − rate)·1[item = g_s] + rate·1[item =
e_{c,s}]], where w_{c,s} ∝ q_c·Π_{t<s} [(1 − rate)·1[item_t = g_t] + rate·1[item_t = e_{c,t}]] is the
posterior of the proposal given the earlier slots. Without a novel cluster (or at rate 0) it serves greedy.
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
    check_logged_slate,
    first_untaken_rows,
    top_k_rows,
)
from explorec.policies.semantic import best_member, padded_cluster_members, text_clusters


def cluster_transition_counts(
    *, history_items: np.ndarray, history_offsets: np.ndarray, item_clusters: np.ndarray, n_clusters: int
) -> np.ndarray:
    """N[a, b]: consecutive items of a history whose cluster changes from a to b (a ≠ b), over all histories.

    Histories in CSR form: user u's items, oldest first, are history_items[offsets[u]:offsets[u + 1]].
    """
    items = np.asarray(history_items, np.int64)
    offsets = np.asarray(history_offsets, np.int64)
    if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != items.size:
        raise ValueError("history_offsets must start at 0 and end at len(history_items)")
    counts = np.zeros((n_clusters, n_clusters))
    if items.size < 2:
        return counts
    sequence = np.asarray(item_clusters, np.int64)[items]
    same_history = np.ones(sequence.size - 1, dtype=bool)
    starts = offsets[1:-1]  # where each next history starts: the pair just before it crosses users
    same_history[starts[(starts > 0) & (starts < sequence.size)] - 1] = False
    source, target = sequence[:-1], sequence[1:]
    keep = same_history & (source != target)
    np.add.at(counts, (source[keep], target[keep]), 1.0)
    return counts


@dataclass
class TransitionUserState:
    """The clusters a user engaged with and the clusters of their latest engaged items (oldest first)."""

    engaged: np.ndarray
    context: list[int]


class InterestTransitionPolicy(Policy):
    """Propose the user's next novel text cluster from learned cluster transitions; explore inside it."""

    name = "interest_transition"
    uses_text_embeddings = True
    clusters_text = True
    learns_cluster_transitions = True

    def __init__(
        self,
        *,
        exploration_rate: float,
        item_clusters: np.ndarray | None = None,
        text_embeddings: np.ndarray | None = None,
        n_clusters: int = 20,
        cluster_seed: int = 0,
        history_items: np.ndarray | None = None,
        history_offsets: np.ndarray | None = None,
        cluster_transitions: np.ndarray | None = None,
        smoothing: float = 1.0,
        context_length: int = 3,
    ) -> None:
        super().__init__(exploration_rate=exploration_rate)
        if item_clusters is None:
            if text_embeddings is None:
                raise ValueError("interest_transition needs text_embeddings or item_clusters")
            item_clusters = text_clusters(
                text_embeddings=text_embeddings, n_clusters=n_clusters, seed=cluster_seed
            )
        self.item_clusters = np.asarray(item_clusters, dtype=np.int64)
        self.n_clusters = int(self.item_clusters.max()) + 1
        if (history_items is None) == (cluster_transitions is None):
            raise ValueError(
                "interest_transition needs the training histories (history_items, history_offsets) or "
                "their cluster_transitions counts, not both"
            )
        if cluster_transitions is None:
            if history_offsets is None:
                raise ValueError("history_items need their history_offsets")
            cluster_transitions = cluster_transition_counts(
                history_items=history_items,
                history_offsets=history_offsets,
                item_clusters=self.item_clusters,
                n_clusters=self.n_clusters,
            )
        counts = np.asarray(cluster_transitions, np.float64)
        if counts.shape != (self.n_clusters, self.n_clusters) or (counts < 0).any():
            raise ValueError(
                f"cluster_transitions must be non-negative counts of shape {(self.n_clusters,) * 2}, "
                f"got {counts.shape}"
            )
        if smoothing <= 0 or context_length < 1:
            raise ValueError("smoothing must be > 0 and context_length >= 1")
        self.transition_counts = counts
        self.context_length = int(context_length)
        off_diagonal = 1.0 - np.eye(self.n_clusters)
        smoothed = (counts + smoothing) * off_diagonal
        self.transitions = smoothed / smoothed.sum(axis=1, keepdims=True)
        """P(next cluster b | current cluster a), rows sum to 1, zero diagonal."""
        self.inflow = (counts * off_diagonal).sum(axis=0) + smoothing
        self._padded_members = padded_cluster_members(self.item_clusters, self.n_clusters)

    def initial_state(self, *, history_items: np.ndarray) -> TransitionUserState:
        """Engaged = clusters of the history; context = clusters of its latest `context_length` items."""
        clusters = self.item_clusters[np.asarray(history_items, dtype=np.int64)]
        engaged = np.zeros(self.n_clusters, dtype=bool)
        engaged[clusters] = True
        return TransitionUserState(engaged, [int(c) for c in clusters[-self.context_length :]])

    def update(
        self, *, state: UserState | None, items: np.ndarray, rewards: np.ndarray, scores: np.ndarray
    ) -> None:
        """Clicked items' clusters become engaged and join the context (in slot order)."""
        if not isinstance(state, TransitionUserState):
            raise ValueError(f"{self.name} needs the TransitionUserState from initial_state")
        clicked = self.item_clusters[np.asarray(items, np.int64)[np.asarray(rewards) > 0]]
        state.engaged[clicked] = True
        state.context = (state.context + [int(c) for c in clicked])[-self.context_length :]

    def proposal_weights(self, state: TransitionUserState) -> np.ndarray:
        """Unnormalised weights of every cluster as the next one (engaged clusters included; callers mask)."""
        if not state.context:
            return self.inflow.copy()
        return self.transitions[np.asarray(state.context, np.int64)].sum(axis=0)

    def select(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        k: int,
        rng: np.random.Generator,
        state: UserState | None = None,
    ) -> Slate:
        """Serve k items for one user (the batch path on one row, draw for draw)."""
        batch = self._walk(
            scores=np.asarray(scores)[None, :],
            excluded=np.asarray(excluded)[None, :],
            k=k,
            states=[state],
            rng=rng,
            logged=None,
        )
        return batch.slate(0)

    def select_batch(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        k: int,
        rng: np.random.Generator,
        states: Sequence[UserState | None] | None = None,
    ) -> SlateBatch:
        """Serve every row; per row the Generator gives 1 + k uniforms (the proposal, then slot flags)."""
        return self._walk(scores=scores, excluded=excluded, k=k, states=states, rng=rng, logged=None)

    def slate_propensities(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        items: np.ndarray,
        state: UserState | None = None,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """The module docstring's exact per-slot probabilities of a logged slate."""
        items = check_logged_slate(items, np.asarray(excluded))
        return self._walk(
            scores=np.asarray(scores)[None, :],
            excluded=np.asarray(excluded)[None, :],
            k=items.size,
            states=[state],
            rng=None,
            logged=items[None, :],
        ).propensities[0]

    def _states(self, states: Sequence[UserState | None] | None, n_rows: int) -> list[TransitionUserState]:
        """One state per row (the empty-history state where none is given)."""
        states = [None] * n_rows if states is None else list(states)
        if len(states) != n_rows:
            raise ValueError(f"{len(states)} states for {n_rows} rows of scores")
        empty = np.empty(0, np.int64)
        return [self.initial_state(history_items=empty) if state is None else state for state in states]

    def _walk(
        self,
        *,
        scores: np.ndarray,
        excluded: np.ndarray,
        k: int,
        states: Sequence[UserState | None] | None,
        rng: np.random.Generator | None,
        logged: np.ndarray | None,
    ) -> SlateBatch:
        """Fill k slots per row, drawing with `rng` (serving) or taking the `logged` items (scoring a log)."""
        allowed = allowed_score_rows(scores, excluded, k)
        n_rows, n_items = allowed.shape
        if n_items != self.item_clusters.size:
            raise ValueError(f"scores cover {n_items} items, item_clusters {self.item_clusters.size}")
        user_states = self._states(states, n_rows)
        rate, rows = self.exploration_rate, np.arange(n_rows)
        greedy = top_k_rows(allowed, k)
        remaining = np.concatenate([allowed, np.full((n_rows, 1), -np.inf)], axis=1)
        members = np.broadcast_to(self._padded_members, (n_rows, *self._padded_members.shape))
        best = best_member(remaining[:, self._padded_members], members)
        engaged = np.stack([state.engaged for state in user_states])
        weights = np.stack([self.proposal_weights(state) for state in user_states])
        proposal = np.where(~engaged & (best >= 0), weights, 0.0)  # q over the novel clusters with items
        active = (proposal.sum(axis=1) > 0) & (rate > 0)
        likelihood = proposal / np.where(active, proposal.sum(axis=1), 1.0)[:, None]
        if logged is None:
            assert rng is not None
            draws = rng.random((n_rows, 1 + k))
            cumulative = np.cumsum(likelihood, axis=1)
            proposed = np.argmax(cumulative > draws[:, :1] * cumulative[:, -1:], axis=1)
            explore = (draws[:, 1:] < rate) & active[:, None]
        items, propensities = np.empty((n_rows, k), np.int64), np.empty((n_rows, k))
        explored = np.zeros((n_rows, k), dtype=bool)
        chosen = np.zeros((n_rows, n_items), dtype=bool)
        for slot in range(k):
            first = first_untaken_rows(greedy, chosen)
            exploring_item = np.where(best >= 0, best, first[:, None])  # e_c: the item if c* = c explores
            if logged is None:
                item = np.where(explore[:, slot], exploring_item[rows, proposed], first)
                explored[:, slot] = explore[:, slot]
            else:
                item = logged[:, slot]
            factor = (1.0 - rate) * (item == first)[:, None] + rate * (exploring_item == item[:, None])
            total = likelihood.sum(axis=1)
            posterior_mass = (likelihood * factor).sum(axis=1) / np.where(total > 0, total, 1.0)
            propensities[:, slot] = np.where(active, posterior_mass, (item == first) * 1.0)
            likelihood = likelihood * factor
            items[:, slot] = item
            chosen[rows, item] = True
            remaining[rows, item] = -np.inf
            cluster = self.item_clusters[item]
            hit = np.flatnonzero(best[rows, cluster] == item)
            if hit.size:
                hit_members = self._padded_members[cluster[hit]]
                best[hit, cluster[hit]] = best_member(
                    np.take_along_axis(remaining[hit], hit_members, axis=1), hit_members
                )
        return SlateBatch(items, propensities, explored, greedy)
