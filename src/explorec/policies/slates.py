"""A policy's slates for batches of users, served offline from their scores and their excluded items."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from explorec.policies.base import Policy, SlateBatch


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
