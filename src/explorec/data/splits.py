"""Evaluation splits (docs/design.md §3) and their registry, the one list of split names: random_ratio,
leave_last_out, temporal_ratio, cold_items and coat_random built in; `register_split` adds one.

Every split takes an interaction frame with dense `user_idx`, `item_idx`, `rating`, `timestamp` columns and
returns a `Split` of three disjoint frames. Orderings are fully deterministic: chronological order breaks
timestamp ties by `item_idx`, and random choices come only from a seeded numpy Generator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from explorec.config import SplitConfig
from explorec.config.choices import Registry
from explorec.data.interactions import chronological
from explorec.errors import DataValidationError

MIN_SPLIT_ROWS = 1
"""Each of train, valid and test needs at least this many interactions: the model is fitted on train,
stopped early on valid's NDCG@10 and scored on test, and none of these means anything on nothing."""
SPLIT_PARTS = ("train", "valid", "test")


@dataclass(frozen=True)
class Split:
    """Train, validation and test interactions; `cold_items` lists items held out of training."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    cold_items: np.ndarray


def _masked_split(ordered: pd.DataFrame, *, is_valid: np.ndarray, is_test: np.ndarray) -> Split:
    """The Split whose validation and test rows are the masked rows of `ordered`, the rest train."""
    is_train = ~(is_test | is_valid)
    return Split(
        train=ordered[is_train].reset_index(drop=True),
        valid=ordered[is_valid].reset_index(drop=True),
        test=ordered[is_test].reset_index(drop=True),
        cold_items=np.array([], dtype=np.int32),
    )


def _position_from_end(frame: pd.DataFrame) -> np.ndarray:
    """Return, for a user-grouped frame, each row's position counted from the user's last row (0 = last)."""
    return frame.groupby("user_idx", sort=False).cumcount(ascending=False).to_numpy()


def leave_last_out(interactions: pd.DataFrame) -> Split:
    """Hold out each user's latest interaction as test and the second latest as validation.

    Users with two interactions give one to test and keep one in train; users with one keep it in train.
    """
    ordered = chronological(interactions)
    from_end = _position_from_end(ordered)
    sizes = ordered.groupby("user_idx", sort=False)["item_idx"].transform("size").to_numpy()
    is_test = (from_end == 0) & (sizes >= 2)
    is_valid = (from_end == 1) & (sizes >= 3)
    return _masked_split(ordered, is_valid=is_valid, is_test=is_test)


def temporal_ratio(interactions: pd.DataFrame, *, valid_ratio: float, test_ratio: float) -> Split:
    """Per-user chronological split: a user's latest round(n·test_ratio) rows are test, the
    round(n·valid_ratio) before them validation (each at least 1 while the user keeps ≥ 1 train row).

    Like leave_last_out it asks for what comes next, but several items deep, so a model (or a session that
    learns from feedback) is judged on a user's next interests rather than on one item.
    """
    ordered = chronological(interactions)
    from_end = _position_from_end(ordered)
    sizes = ordered.groupby("user_idx", sort=False)["item_idx"].transform("size").to_numpy()
    n_test = np.minimum(np.maximum(np.round(sizes * test_ratio), 1), sizes - 1).astype(int)
    n_valid = np.minimum(np.maximum(np.round(sizes * valid_ratio), 1), sizes - 1 - n_test).astype(int)
    is_test = from_end < n_test
    is_valid = (from_end >= n_test) & (from_end < n_test + n_valid)
    return _masked_split(ordered, is_valid=is_valid, is_test=is_test)


def _random_ratio_masks(
    frame: pd.DataFrame, *, valid_ratio: float, test_ratio: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Return (valid, test) boolean masks giving each user round(n·ratio) rows, keeping ≥ 1 in train."""
    random_key = rng.random(len(frame))
    order = np.lexsort((random_key, frame["user_idx"].to_numpy()))
    users_sorted = frame["user_idx"].to_numpy()[order]
    _, starts, counts = np.unique(users_sorted, return_index=True, return_counts=True)
    rank_in_user = np.arange(len(frame)) - np.repeat(starts, counts)
    n_rows = np.repeat(counts, counts)
    n_test = np.minimum(np.round(n_rows * test_ratio).astype(int), np.maximum(n_rows - 1, 0))
    n_valid = np.minimum(np.round(n_rows * valid_ratio).astype(int), np.maximum(n_rows - 1 - n_test, 0))
    test_sorted = rank_in_user < n_test
    valid_sorted = (rank_in_user >= n_test) & (rank_in_user < n_test + n_valid)
    is_test = np.zeros(len(frame), dtype=bool)
    is_valid = np.zeros(len(frame), dtype=bool)
    is_test[order] = test_sorted
    is_valid[order] = valid_sorted
    return is_valid, is_test


def random_ratio(interactions: pd.DataFrame, *, valid_ratio: float, test_ratio: float, seed: int) -> Split:
    """Per-user random split: round(n·test_ratio) rows to test, round(n·valid_ratio) to validation, seeded."""
    ordered = chronological(interactions)
    rng = np.random.default_rng(seed)
    is_valid, is_test = _random_ratio_masks(ordered, valid_ratio=valid_ratio, test_ratio=test_ratio, rng=rng)
    return _masked_split(ordered, is_valid=is_valid, is_test=is_test)


def cold_items(
    interactions: pd.DataFrame,
    *,
    eligible_items: np.ndarray,
    cold_item_ratio: float,
    valid_ratio: float,
    test_ratio: float,
    seed: int,
) -> Split:
    """Hold round(ratio·|eligible|) items out of training entirely; half go to validation, half to test.

    Interactions with validation-cold items form part of validation, those with test-cold items part of test;
    the remaining (warm) interactions are split per user at random as in `random_ratio`.
    """
    rng = np.random.default_rng(seed)
    n_cold = round(len(eligible_items) * cold_item_ratio)
    if n_cold < 2:
        raise ValueError(
            f"cold_items needs at least 2 held-out items; got {n_cold} from {len(eligible_items)}"
        )
    chosen = rng.permutation(np.sort(eligible_items))[:n_cold].astype(np.int32)
    valid_cold, test_cold = np.sort(chosen[: n_cold // 2]), np.sort(chosen[n_cold // 2 :])
    ordered = chronological(interactions)
    item = ordered["item_idx"].to_numpy()
    in_valid_cold, in_test_cold = np.isin(item, valid_cold), np.isin(item, test_cold)
    warm = ordered[~(in_valid_cold | in_test_cold)].reset_index(drop=True)
    warm_split = random_ratio(warm, valid_ratio=valid_ratio, test_ratio=test_ratio, seed=seed)
    valid = chronological(pd.concat([warm_split.valid, ordered[in_valid_cold]], ignore_index=True))
    test = chronological(pd.concat([warm_split.test, ordered[in_test_cold]], ignore_index=True))
    return Split(train=warm_split.train, valid=valid, test=test, cold_items=np.sort(chosen))


def coat_random(
    train_interactions: pd.DataFrame, random_test: pd.DataFrame, *, valid_ratio: float, seed: int
) -> Split:
    """Coat: self-selected ratings train (a random share per user validates); uniformly random ratings test.

    Test rows whose (user, item) is also in train or validation are dropped: a recommender never ranks items
    the user already rated, so they could not be hit.
    """
    ordered = chronological(train_interactions)
    rng = np.random.default_rng(seed)
    is_valid, _ = _random_ratio_masks(ordered, valid_ratio=valid_ratio, test_ratio=0.0, rng=rng)
    seen = pd.MultiIndex.from_frame(ordered[["user_idx", "item_idx"]])
    test_keys = pd.MultiIndex.from_frame(random_test[["user_idx", "item_idx"]])
    test = chronological(random_test[~test_keys.isin(seen)])
    return Split(
        train=ordered[~is_valid].reset_index(drop=True),
        valid=ordered[is_valid].reset_index(drop=True),
        test=test,
        cold_items=np.array([], dtype=np.int32),
    )


@dataclass(frozen=True)
class SplitInputs:
    """What a split may use beyond the interactions: cold-start candidates and a source's own test set."""

    eligible_cold_items: np.ndarray | None = None
    random_test: pd.DataFrame | None = None


@dataclass(frozen=True)
class SplitMethod:
    """A registered split: its name, whether it holds out each user's latest rows, and its function."""

    name: str
    chronological: bool
    split: Callable[[pd.DataFrame, SplitConfig, SplitInputs], Split]


def _split_leave_last_out(interactions: pd.DataFrame, cfg: SplitConfig, inputs: SplitInputs) -> Split:
    """leave_last_out under the config."""
    return leave_last_out(interactions)


def _split_temporal_ratio(interactions: pd.DataFrame, cfg: SplitConfig, inputs: SplitInputs) -> Split:
    """temporal_ratio under the config."""
    return temporal_ratio(interactions, valid_ratio=cfg.valid_ratio, test_ratio=cfg.test_ratio)


def _split_random_ratio(interactions: pd.DataFrame, cfg: SplitConfig, inputs: SplitInputs) -> Split:
    """random_ratio under the config."""
    return random_ratio(interactions, valid_ratio=cfg.valid_ratio, test_ratio=cfg.test_ratio, seed=cfg.seed)


def _split_cold_items(interactions: pd.DataFrame, cfg: SplitConfig, inputs: SplitInputs) -> Split:
    """cold_items under the config; every item is eligible unless the inputs say otherwise."""
    eligible = inputs.eligible_cold_items
    if eligible is None:
        eligible = np.unique(interactions["item_idx"].to_numpy())
    return cold_items(
        interactions,
        eligible_items=eligible,
        cold_item_ratio=cfg.cold_item_ratio,
        valid_ratio=cfg.valid_ratio,
        test_ratio=cfg.test_ratio,
        seed=cfg.seed,
    )


def _split_coat_random(interactions: pd.DataFrame, cfg: SplitConfig, inputs: SplitInputs) -> Split:
    """coat_random under the config; needs the source's random-exposure test set."""
    if inputs.random_test is None:
        raise ValueError("coat_random needs the source's random-exposure test set")
    return coat_random(interactions, inputs.random_test, valid_ratio=cfg.valid_ratio, seed=cfg.seed)


BUILT_IN_SPLITS = (
    SplitMethod("leave_last_out", chronological=True, split=_split_leave_last_out),
    SplitMethod("random_ratio", chronological=False, split=_split_random_ratio),
    SplitMethod("temporal_ratio", chronological=True, split=_split_temporal_ratio),
    SplitMethod("cold_items", chronological=False, split=_split_cold_items),
    SplitMethod("coat_random", chronological=False, split=_split_coat_random),
)
SPLITS: Registry[SplitMethod] = Registry("split", ((method.name, method) for method in BUILT_IN_SPLITS))
"""Every split method by name: the one list of split names."""


def register_split(method: SplitMethod) -> SplitMethod:
    """Add a split to the registry; its name must be new."""
    return SPLITS.register(method.name, method)


def unregister_split(name: str) -> None:
    """Remove a split from the registry (for extensions and tests that registered one)."""
    SPLITS.unregister(name)


def split_names() -> tuple[str, ...]:
    """Return the registered split names, built-ins first, in registration order."""
    return SPLITS.names()


def split_method(name: str) -> SplitMethod:
    """Return the registered split `name`."""
    return SPLITS.get(name)


def check_split_sizes(split: Split, *, split_name: str, source: str) -> None:
    """Raise a DataValidationError naming `source` when train, valid or test has under MIN_SPLIT_ROWS rows."""
    sizes = {part: len(getattr(split, part)) for part in SPLIT_PARTS}
    small = [part for part in SPLIT_PARTS if sizes[part] < MIN_SPLIT_ROWS]
    if not small:
        return
    users = pd.concat([getattr(split, part)["user_idx"] for part in SPLIT_PARTS]).nunique()
    hint = (
        " (leave_last_out needs users with 3 or more interactions)" if split_name == "leave_last_out" else ""
    )
    raise DataValidationError(
        file=source,
        row=None,
        column=None,
        problem=(
            f"too little data to split: {sum(sizes.values())} interaction(s) of {users} user(s) leave "
            f"{' and '.join(small)} empty under split={split_name}{hint}; "
            f"train, valid and test each need at least {MIN_SPLIT_ROWS} interaction"
        ),
    )


def make_split(
    interactions: pd.DataFrame,
    cfg: SplitConfig,
    *,
    eligible_cold_items: np.ndarray | None = None,
    random_test: pd.DataFrame | None = None,
) -> Split:
    """Split the interactions with the split named in the config."""
    inputs = SplitInputs(eligible_cold_items=eligible_cold_items, random_test=random_test)
    return split_method(cfg.name).split(interactions, cfg, inputs)
