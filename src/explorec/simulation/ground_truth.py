"""The simulated users and the ground truth: pools, visible/hidden positives, leak-free training set, EASE.

Positives are ratings ≥ min_rating. Users with at least `min_user_positives` positives are eligible; two
disjoint seeded pools `tune` and `test` are drawn from them. Each simulated user shows the earliest
`visible_share` of their positives (by timestamp, ties by item) and hides the rest. The recommender may be
trained on every other user's positives plus the visible positives of simulated users only
(`training_interactions`, which raises `LeakageError` if a hidden positive would reach training).
The ground truth (`GROUND_TRUTHS`) is EASE, implicit ALS or popularity-dampened EASE, fitted on all positives
of all users, with λ chosen on a random holdout of the positives of users outside the test pool.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import scipy.sparse as sp

from explorec.baselines.als import ALS, ALSParams
from explorec.baselines.ease import ease_weights
from explorec.data.interactions import chronological
from explorec.data.processed import ProcessedDataset, interactions_to_csr

TUNE_POOL, TEST_POOL = "tune", "test"
GROUND_TRUTHS = ("ease", "ials", "ease_popularity_dampened")
POOL_STREAM, HOLDOUT_STREAM, NOISE_STREAM = 11, 12, 13


class LeakageError(RuntimeError):
    """A hidden positive of a simulated user would reach the recommender's training data."""


def stream(*keys: int) -> np.random.Generator:
    """A numpy Generator derived from integer keys (seed, stream id, replication, user, …)."""
    return np.random.default_rng(np.random.SeedSequence([int(key) for key in keys]))


def positives_from_dataset(dataset: ProcessedDataset, *, min_rating: float) -> pd.DataFrame:
    """All interactions of every split with rating ≥ min_rating: user_idx, item_idx, timestamp."""
    frame = pd.concat([dataset.train, dataset.valid, dataset.test], ignore_index=True)
    frame = frame[frame["rating"] >= min_rating]
    return frame[["user_idx", "item_idx", "timestamp"]].drop_duplicates(["user_idx", "item_idx"])


@dataclass(frozen=True)
class UserPools:
    """Disjoint user index arrays of the tune and test pools (sorted)."""

    tune: np.ndarray
    test: np.ndarray

    def get(self, name: str) -> np.ndarray:
        """The users of pool `name` (tune or test)."""
        if name not in (TUNE_POOL, TEST_POOL):
            raise ValueError(f"pool must be {TUNE_POOL!r} or {TEST_POOL!r}, got {name!r}")
        return self.tune if name == TUNE_POOL else self.test

    @property
    def simulated(self) -> np.ndarray:
        """Users of both pools."""
        return np.union1d(self.tune, self.test)


def draw_pools(
    *, positives: pd.DataFrame, min_user_positives: int, tune_users: int, test_users: int, seed: int
) -> UserPools:
    """Draw disjoint tune and test pools from users with at least min_user_positives positives."""
    counts = positives.groupby("user_idx").size()
    eligible = np.sort(counts.index[counts >= min_user_positives].to_numpy(np.int64))
    if eligible.size < tune_users + test_users:
        raise ValueError(
            f"only {eligible.size} users have ≥ {min_user_positives} positives; "
            f"tune_users + test_users = {tune_users + test_users}"
        )
    chosen = stream(seed, POOL_STREAM).permutation(eligible)
    return UserPools(
        tune=np.sort(chosen[:tune_users]), test=np.sort(chosen[tune_users : tune_users + test_users])
    )


def split_visible_hidden(
    *, positives: pd.DataFrame, users: np.ndarray, visible_share: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(visible, hidden) positives of `users`: the earliest ceil(share·n) (by time, then item) are visible."""
    if not 0.0 < visible_share < 1.0:
        raise ValueError(f"visible_share must lie in (0, 1), got {visible_share}")
    frame = chronological(positives[positives["user_idx"].isin(users)])
    rank = frame.groupby("user_idx").cumcount()
    size = frame.groupby("user_idx")["item_idx"].transform("size")
    visible = rank < np.ceil(visible_share * size)
    return frame[visible].reset_index(drop=True), frame[~visible].reset_index(drop=True)


def check_no_leakage(*, training: pd.DataFrame, hidden: pd.DataFrame) -> None:
    """Raise LeakageError if any (user, item) pair of `hidden` appears in `training`."""
    keys = ["user_idx", "item_idx"]
    leaked = training[keys].merge(hidden[keys].drop_duplicates(), on=keys, how="inner")
    if len(leaked):
        first = leaked.iloc[0]
        raise LeakageError(
            f"{len(leaked)} hidden positives of simulated users would reach training "
            f"(e.g. user {int(first['user_idx'])}, item {int(first['item_idx'])})"
        )


def training_interactions(
    *, positives: pd.DataFrame, simulated_users: np.ndarray, visible: pd.DataFrame, hidden: pd.DataFrame
) -> pd.DataFrame:
    """Positives of non-simulated users plus the visible positives of simulated users; asserts no leakage."""
    others = positives[~positives["user_idx"].isin(simulated_users)]
    training = pd.concat([others, visible[others.columns]], ignore_index=True)
    check_no_leakage(training=training, hidden=hidden)
    return training


def restrict_dataset(
    dataset: ProcessedDataset, *, visible: pd.DataFrame, hidden: pd.DataFrame
) -> ProcessedDataset:
    """The dataset without any interaction of a simulated user after their visible cut-off (any rating).

    A simulated user keeps only interactions up to the timestamp of their last visible positive, and never
    a hidden positive; use it to fit the towers. Raises LeakageError if a hidden positive survives.
    """
    cutoff = visible.groupby("user_idx")["timestamp"].max()
    hidden_keys = hidden[["user_idx", "item_idx"]].assign(_hidden=True)

    def keep(frame: pd.DataFrame) -> pd.DataFrame:
        limit = frame["user_idx"].map(cutoff)
        frame = frame[limit.isna() | (frame["timestamp"] <= limit)]
        marked = frame.merge(hidden_keys, on=["user_idx", "item_idx"], how="left")
        return frame[marked["_hidden"].isna().to_numpy()].reset_index(drop=True)

    splits = {name: keep(getattr(dataset, name)) for name in ("train", "valid", "test")}
    for frame in splits.values():
        check_no_leakage(training=frame, hidden=hidden)
    return ProcessedDataset(
        path=dataset.path, items=dataset.items, users=dataset.users, manifest=dataset.manifest, **splits
    )


def holdout_split(
    matrix: sp.csr_matrix, *, share: float, rng: np.random.Generator, rows: np.ndarray | None = None
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Split a binary matrix's entries at random into (kept, held out ≈ share); only `rows` lose entries."""
    coo = matrix.tocoo()
    held = rng.random(coo.nnz) < share
    if rows is not None:
        held &= np.isin(coo.row, rows)
    build = lambda mask: sp.csr_matrix(  # noqa: E731
        (coo.data[mask], (coo.row[mask], coo.col[mask])), shape=matrix.shape
    )
    return build(~held), build(held)


def holdout_recall(*, scores: np.ndarray, train: sp.csr_matrix, holdout: sp.csr_matrix, k: int = 20) -> float:
    """Mean over users with held-out items of recall@k, training items masked (rows: the same users)."""
    scores = np.where(train.toarray() > 0, -np.inf, scores)
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    held = holdout.toarray() > 0
    hits = np.take_along_axis(held, top, axis=1).sum(axis=1)
    n_held = held.sum(axis=1)
    users = n_held > 0
    return float(np.mean(hits[users] / np.minimum(n_held[users], k)))


Scorer = Callable[[sp.csr_matrix, float], Callable[[np.ndarray], np.ndarray]]
"""Fit a ground-truth model on a binary matrix with regularisation λ; return its scores of given users."""


def ease_scorer(matrix: sp.csr_matrix, l2: float) -> Callable[[np.ndarray], np.ndarray]:
    """EASE (Steck 2019) fitted on `matrix` with λ = l2: the scores x_u B of given users."""
    weights = ease_weights(matrix, l2=l2)
    return lambda users: np.asarray(matrix[users] @ weights)


def ials_scorer(
    matrix: sp.csr_matrix, l2: float, *, factors: int, alpha: float, iterations: int, seed: int
) -> Callable[[np.ndarray], np.ndarray]:
    """Implicit ALS (Hu, Koren & Volinsky 2008) fitted on `matrix` with λ = l2: the scores x_uᵀ y_i."""
    model = ALS(ALSParams(factors=factors, alpha=alpha, regularization=l2, iterations=iterations, seed=seed))
    model.fit(matrix)
    user_factors, item_factors = model.factors
    return lambda users: user_factors[users] @ item_factors.T


def choose_l2(
    *,
    matrix: sp.csr_matrix,
    scorer: Scorer,
    l2_grid: list[float],
    holdout_share: float,
    holdout_users: np.ndarray,
    seed: int,
) -> tuple[float, dict[float, float]]:
    """λ with the best holdout recall@20 of `scorer` fitted on the rest, and every λ's recall.

    Entries are held out only from `holdout_users` (never the test pool), and recall is measured on them.
    """
    train, holdout = holdout_split(
        matrix, share=holdout_share, rng=stream(seed, HOLDOUT_STREAM), rows=holdout_users
    )
    judged = np.flatnonzero(np.diff(holdout.indptr) > 0)
    recalls = {
        float(l2): holdout_recall(
            scores=scorer(train, float(l2))(judged), train=train[judged], holdout=holdout[judged]
        )
        for l2 in l2_grid
    }
    return max(recalls, key=lambda l2: recalls[l2]), recalls


def standardise_rows(values: np.ndarray) -> np.ndarray:
    """Each row minus its mean, divided by its std (1 where the std is 0)."""
    std = values.std(axis=1, keepdims=True)
    return (values - values.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)


@dataclass(frozen=True)
class GroundTruth:
    """Per-user standardised ground-truth scores z of the simulated users and how they were made."""

    users: np.ndarray
    standardised_scores: np.ndarray
    l2: float  # the regularisation λ chosen on the holdout
    holdout_recall: dict[float, float]  # recall@20 of each λ on the holdout
    kind: str


@dataclass(frozen=True)
class GroundTruthSpec:
    """Which ground truth, its λ grid and holdout, its damping and iALS sizes (`spec_from_config`)."""

    kind: str
    l2_grid: tuple[float, ...]
    holdout_share: float
    popularity_damping: float
    ials_factors: int
    ials_alpha: float
    ials_iterations: int


class GroundTruthFits:
    """Fitted truths shared by worlds that fit the same family on the same positives and pools (a study's).

    A study builds one world per (world, ground truth): the static and churn worlds fit the same truth on
    the same positives, and `ease_popularity_dampened` is EASE's fit plus a shift. Keyed by the family
    (EASE or iALS), its settings, the seed and digests of the positives and both user sets, so a fit is
    reused only where it would come out the same.
    """

    def __init__(self) -> None:
        self._fits: dict[tuple[object, ...], tuple[np.ndarray, float, dict[float, float]]] = {}
        self.computed = 0  # fits computed, not read back

    def get(
        self, key: tuple[object, ...], fit: Callable[[], tuple[np.ndarray, float, dict[float, float]]]
    ) -> tuple[np.ndarray, float, dict[float, float]]:
        """The fit stored under `key`, computed by `fit` the first time."""
        if key not in self._fits:
            self._fits[key] = fit()
            self.computed += 1
        return self._fits[key]


def _digest(*arrays: np.ndarray) -> str:
    """A content digest of integer arrays (shape and values)."""
    hasher = hashlib.sha256()
    for array in arrays:
        contiguous = np.ascontiguousarray(array, dtype=np.int64)
        hasher.update(str(contiguous.shape).encode())
        hasher.update(contiguous.tobytes())
    return hasher.hexdigest()


def fit_ground_truth(
    *,
    positives: pd.DataFrame,
    users: np.ndarray,
    n_users: int,
    n_items: int,
    spec: GroundTruthSpec,
    test_users: np.ndarray,
    seed: int,
    fits: GroundTruthFits | None = None,
) -> GroundTruth:
    """Fit the ground truth on all positives (λ from a holdout outside `test_users`); z of `users`.

    - ease: EASE's scores, standardised per user.
    - ials: implicit ALS's scores x_uᵀ y_i (a factor model: a different family than EASE's item-item
      weights), standardised per user.
    - ease_popularity_dampened: EASE's z minus popularity_damping × the standardised log item popularity, so
      popular items are worth less to everyone than EASE says (the robustness check against a ground truth
      that rewards whatever resembles a popularity-heavy collaborative model).

    `fits` (optional) shares fits between calls that would compute the same one.
    """
    if spec.kind not in GROUND_TRUTHS:
        raise ValueError(f"ground_truth must be one of {', '.join(GROUND_TRUTHS)}, got {spec.kind!r}")
    matrix = interactions_to_csr(positives, n_users=n_users, n_items=n_items)
    users = np.asarray(users, np.int64)
    scorer: Scorer = ease_scorer
    family: tuple[object, ...] = ("ease",)
    if spec.kind == "ials":
        scorer = partial(
            ials_scorer,
            factors=spec.ials_factors,
            alpha=spec.ials_alpha,
            iterations=spec.ials_iterations,
            seed=seed,
        )
        family = ("ials", spec.ials_factors, spec.ials_alpha, spec.ials_iterations)

    def fit() -> tuple[np.ndarray, float, dict[float, float]]:
        l2, recalls = choose_l2(
            matrix=matrix,
            scorer=scorer,
            l2_grid=list(spec.l2_grid),
            holdout_share=spec.holdout_share,
            holdout_users=np.setdiff1d(np.arange(n_users), test_users),
            seed=seed,
        )
        return standardise_rows(scorer(matrix, l2)(users)), l2, recalls

    if fits is None:
        z, l2, recalls = fit()
    else:
        key = (
            *family,
            tuple(spec.l2_grid),
            spec.holdout_share,
            seed,
            n_users,
            n_items,
            _digest(matrix.indptr, matrix.indices, users, np.asarray(test_users)),
        )
        z, l2, recalls = fits.get(key, fit)
    if spec.kind == "ease_popularity_dampened":
        log_popularity = np.log1p(np.asarray(matrix.sum(axis=0)).ravel())
        z = z - spec.popularity_damping * standardise_rows(log_popularity[None, :])
    return GroundTruth(users, z, l2, dict(recalls), spec.kind)


def frozen_noise(*, users: np.ndarray, n_items: int, noise_std: float, seed: int) -> np.ndarray:
    """ε[u, i] ~ N(0, noise_std²) drawn from (seed, user) alone: the same in every policy and replication."""
    return np.stack([noise_std * stream(seed, NOISE_STREAM, int(u)).standard_normal(n_items) for u in users])
