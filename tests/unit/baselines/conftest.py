"""Planted block-structured interactions shared by the baseline tests."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp


@pytest.fixture
def planted_blocks() -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Return (train, held_out): 2 user groups × 2 item blocks, each user holds 1 in-block positive out."""
    rng = np.random.default_rng(0)
    n_users, n_items = 60, 40
    dense = np.zeros((n_users, n_items), dtype=np.float32)
    for user in range(n_users):
        block = np.arange(20) if user < 30 else np.arange(20, 40)
        dense[user, rng.choice(block, size=12, replace=False)] = 1.0
    held_out = np.zeros_like(dense)
    for user in range(n_users):
        held_out[user, rng.choice(np.flatnonzero(dense[user]))] = 1.0
    return sp.csr_matrix(dense - held_out), sp.csr_matrix(held_out)
