"""The churn world: a share of the items with text is new, unknown to the towers, and arrives in the horizon.

`simulate.world=churn` withholds a seeded share (`churn_share`) of the items that have text and at least one
positive. The ground truth is fitted on every positive, so it knows them; the towers never see one of their
interactions (any rating, any split), so the item tower gives them the vector of its text path without an ID
embedding (`ItemTower` zeroes the ID part of an item unseen in training, exactly what the service does for an
item added through `/items`). A simulated user's visible positives of a new item move to the hidden ones:
nobody can have consumed an item before it exists. `churn_initial_share` of the new items enter at visit 0,
the rest arrive evenly over visits 1 .. T − 1 in a seeded order; before its arrival visit an item is served to
nobody (the oracle included). `simulate.world=static` is the fixed catalogue (no item is new).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from explorec.simulation.ground_truth import LeakageError, stream

CHURN_STREAM = 31
"""Random stream of the new items' choice and order (apart from the ground truth's 1x and the runner's 2x)."""


@dataclass(frozen=True)
class Arrivals:
    """When each item enters the catalogue (visit index, 0 = from the start) and which items are new."""

    visit: np.ndarray
    new: np.ndarray

    @property
    def new_items(self) -> np.ndarray:
        """The new (withheld) items, sorted."""
        return np.flatnonzero(self.new)

    @property
    def churns(self) -> bool:
        """Whether any item is new (False in the static world)."""
        return bool(self.new.any())

    def unavailable(self, visit: int) -> np.ndarray:
        """Boolean (n_items,): True for items that have not entered the catalogue by `visit` (0-based)."""
        return self.visit > visit

    def facts(self) -> dict[str, int]:
        """How many items are new, how many enter at visit 0 and at most per later visit."""
        later = self.visit[self.new & (self.visit > 0)]
        return {
            "n_new_items": int(self.new.sum()),
            "n_new_at_visit_0": int((self.new & (self.visit == 0)).sum()),
            "max_new_per_later_visit": int(np.bincount(later).max()) if later.size else 0,
        }


def static_arrivals(n_items: int) -> Arrivals:
    """The fixed catalogue: every item there from the start, none new."""
    return Arrivals(np.zeros(n_items, np.int64), np.zeros(n_items, bool))


def draw_arrivals(
    *,
    eligible_items: np.ndarray,
    n_items: int,
    share: float,
    initial_share: float,
    n_visits: int,
    seed: int,
) -> Arrivals:
    """Withhold round(share · |eligible|) eligible items (at least 1) and give each its arrival visit.

    In a seeded order, the first round(initial_share · n_new) enter at visit 0 and the rest are spread evenly
    over visits 1 .. n_visits − 1 (all at visit 0 when there is only one visit).
    """
    eligible = np.unique(np.asarray(eligible_items, np.int64))
    if not 0.0 < share < 1.0 or not 0.0 <= initial_share <= 1.0:
        raise ValueError(f"churn shares out of range: share={share}, initial_share={initial_share}")
    if eligible.size < 2:
        raise ValueError(
            f"the churn world needs 2 or more items with text and positives, got {eligible.size}"
        )
    n_new = min(max(1, round(share * eligible.size)), eligible.size - 1)
    order = stream(seed, CHURN_STREAM).permutation(eligible)[:n_new]
    n_initial = round(initial_share * n_new) if n_visits > 1 else n_new
    visit = np.zeros(n_items, np.int64)
    n_later = n_new - n_initial
    visit[order[n_initial:]] = 1 + (np.arange(n_later) * (n_visits - 1)) // max(n_later, 1)
    new = np.zeros(n_items, bool)
    new[order] = True
    return Arrivals(visit, new)


def withhold_from_visible(
    *, visible: pd.DataFrame, hidden: pd.DataFrame, arrivals: Arrivals
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Move the visible positives of new items to the hidden ones (nobody consumed them before they came)."""
    moved = arrivals.new[visible["item_idx"].to_numpy()]
    if not moved.any():
        return visible, hidden
    hidden = pd.concat([hidden, visible[moved]], ignore_index=True)
    return visible[~moved].reset_index(drop=True), hidden


def without_new_items(frame: pd.DataFrame, arrivals: Arrivals) -> pd.DataFrame:
    """The rows of `frame` whose item is not new."""
    return frame[~arrivals.new[frame["item_idx"].to_numpy()]].reset_index(drop=True)


def check_no_new_items(frame: pd.DataFrame, arrivals: Arrivals, *, where: str) -> None:
    """Raise LeakageError if an interaction with a new (withheld) item is in `frame`."""
    leaked = frame[arrivals.new[frame["item_idx"].to_numpy()]]
    if len(leaked):
        first = leaked.iloc[0]
        raise LeakageError(
            f"{len(leaked)} interactions with withheld (new) items would reach {where} "
            f"(e.g. user {int(first['user_idx'])}, item {int(first['item_idx'])})"
        )
