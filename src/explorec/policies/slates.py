"""A policy's slates for batches of users, served offline from their scores and their excluded items."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from explorec.policies.base import (
    Policy,
    Slate,
    SlateBatch,
    UserState,
    allowed_scores,
    top_k_indices,
)


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


def floor_pool_items(scores: np.ndarray, excluded: np.ndarray, *, k: int, pool: int | None) -> np.ndarray:
    """The items a floor slate is drawn from: the `pool` best allowed items by score (None: every one).

    A pool smaller than the slate is widened to k items.
    """
    excluded = np.asarray(excluded, dtype=bool)
    allowed = np.flatnonzero(~excluded)
    if pool is None or pool >= allowed.size:
        return allowed
    size = max(int(pool), k)
    return top_k_indices(allowed_scores(scores, excluded, size), size)


def with_exploration_floor(
    policy: Policy,
    slate: Slate,
    *,
    scores: np.ndarray,
    excluded: np.ndarray,
    state: UserState | None,
    rng: np.random.Generator,
    floor: float,
    pool: int | None = None,
) -> Slate:
    """With probability `floor` serve a uniformly random slate of the floor's pool instead of `slate`.

    The served process is (1 − f)·policy + f·uniform over ordered slates of the pool (`floor_pool_items`:
    the `pool` best allowed items by score, or every allowed item), so every pool item has a positive
    probability in every slot and logs of a deterministic policy support candidates that choose among
    them. Each slot's propensity is the mixture's probability of that item there given the earlier slots:
    P(first s+1 items) / P(first s items), with P(prefix) = (1 − f)·Π π_t + f·Π 1[item in pool]/(m − t),
    where π_t are the policy's own conditional propensities of the served items and m the pool's size.
    """
    if floor <= 0.0:
        return slate
    k = slate.items.size
    members = floor_pool_items(scores, excluded, k=k, pool=pool)
    if rng.random() < floor:
        items = rng.choice(members, size=k, replace=False)
        explored = np.ones(k, dtype=bool)
    else:
        items, explored = slate.items, slate.explored
    own = policy.slate_propensities(scores=scores, excluded=excluded, items=items, state=state)
    in_pool = np.isin(items, members)
    policy_prefix = np.concatenate([[1.0], np.cumprod(own)])
    uniform_prefix = np.concatenate([[1.0], np.cumprod(in_pool / (members.size - np.arange(k)))])
    mixture = (1.0 - floor) * policy_prefix + floor * uniform_prefix
    return Slate(
        items=items,
        propensities=mixture[1:] / mixture[:-1],
        explored=explored,
        greedy_items=slate.greedy_items,
    )


def policy_exposure(
    policy: Policy,
    *,
    scores: np.ndarray,
    excluded: np.ndarray,
    state: UserState | None,
    examination: np.ndarray,
    rng: np.random.Generator,
    draws: int,
) -> np.ndarray:
    """e(a) = Σ_s θ_s·P(the policy puts a in slot s), for every item: its examination-weighted exposure.

    `examination` holds θ_s for the slate's slots. Averaged over `draws` of the policy's own slates: with
    `Policy.slot_exposure` each draw adds the whole law of every slot given the draw's earlier slots (exact in
    expectation, no counting noise on rare items); without it, each draw's own items are counted. A draw
    whose propensities are all 1 shows a deterministic policy: that one slate is its exposure.
    """
    examination = np.asarray(examination, dtype=np.float64)
    k = examination.size
    exposure = np.zeros(np.asarray(excluded).size)
    for draw in range(draws):
        slate = policy.select(scores=scores, excluded=excluded, k=k, rng=rng, state=state)
        if draw == 0 and bool(np.all(slate.propensities == 1.0)):
            exposure[slate.items] += examination
            return exposure
        exposed = policy.slot_exposure(
            scores=scores, excluded=excluded, items=slate.items, examination=examination, state=state
        )
        if exposed is None:
            exposure[slate.items] += examination
        else:
            exposure += exposed
    return exposure / draws


def floor_exposure(
    scores: np.ndarray, excluded: np.ndarray, *, examination: np.ndarray, pool: int | None
) -> np.ndarray:
    """Exposure of every item under the floor's uniform slates: Σ_s θ_s / m on each of the m pool items."""
    examination = np.asarray(examination, dtype=np.float64)
    members = floor_pool_items(scores, excluded, k=examination.size, pool=pool)
    exposure = np.zeros(np.asarray(excluded).size)
    exposure[members] = examination.sum() / members.size
    return exposure
