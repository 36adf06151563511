"""A policy's slates for batches of users, served offline from their scores and their excluded items."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from explorec.policies.base import Policy, Slate, SlateBatch, UserState


def serve_batch(
    policy: Policy, *, scores: np.ndarray, excluded: sp.csr_matrix, k: int, rng: np.random.Generator
) -> SlateBatch:
    """Serve one slate per row of `scores` [n_users, n_items], never an item of that row of `excluded`.

    Each user's policy state starts from their excluded items (their visible history).
    """
    mask = excluded.toarray().astype(bool)
    states = [policy.initial_state(history_items=row.indices) for row in excluded]
    return policy.select_batch(scores=scores, excluded=mask, k=k, rng=rng, states=states)


def join_batches(batches: Sequence[SlateBatch], *, k: int) -> SlateBatch:
    """Return the slates of consecutive batches as one SlateBatch (fields of shape (0, k) when none)."""
    if not batches:
        empty = np.zeros((0, k), dtype=np.int64)
        return SlateBatch(
            items=empty,
            propensities=np.zeros((0, k)),
            explored=np.zeros((0, k), dtype=bool),
            greedy_items=empty,
        )
    fields = (field.name for field in dataclasses.fields(SlateBatch))
    return SlateBatch(
        **{name: np.concatenate([getattr(batch, name) for batch in batches]) for name in fields}
    )


def with_exploration_floor(
    policy: Policy,
    slate: Slate,
    *,
    scores: np.ndarray,
    excluded: np.ndarray,
    state: UserState | None,
    rng: np.random.Generator,
    floor: float,
) -> Slate:
    """With probability `floor` serve a uniformly random slate instead of `slate`; mixture propensities.

    The served process is (1 − f)·policy + f·uniform over ordered slates of the allowed items, so every
    allowed item has a positive probability in every slot and logs of a deterministic policy support any
    candidate. Each slot's propensity is the mixture's probability of that item there given the earlier
    slots: P(first s+1 items) / P(first s items), with P(prefix) = (1 − f)·Π π_t + f·Π 1/n_t, where π_t
    are the policy's own conditional propensities of the served items and n_t the items allowed at slot t.
    """
    if floor <= 0.0:
        return slate
    k = slate.items.size
    if rng.random() < floor:
        allowed = np.flatnonzero(~np.asarray(excluded, dtype=bool))
        items = rng.choice(allowed, size=k, replace=False)
        explored = np.ones(k, dtype=bool)
    else:
        items, explored = slate.items, slate.explored
    own = policy.slate_propensities(scores=scores, excluded=excluded, items=items, state=state)
    remaining = int(np.count_nonzero(~np.asarray(excluded, dtype=bool))) - np.arange(k)
    policy_prefix = np.concatenate([[1.0], np.cumprod(own)])
    uniform_prefix = np.concatenate([[1.0], np.cumprod(1.0 / remaining)])
    mixture = (1.0 - floor) * policy_prefix + floor * uniform_prefix
    return Slate(
        items=items,
        propensities=mixture[1:] / mixture[:-1],
        explored=explored,
        greedy_items=slate.greedy_items,
    )
