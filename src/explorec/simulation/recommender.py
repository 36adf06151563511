"""What the simulator needs from a recommender: item vectors and raw scores of the simulated users.

`RecommenderOutputs` is the narrow interface. `two_tower_recommender` (the default) fits the towers with the
project's training library (`explorec.models.fit.fit_two_tower`) on the leak-free restricted data set
(`tower_training_dataset`: every non-simulated user, plus each simulated user's interactions up to their
visible cut-off, never a hidden positive, and in the churn world no interaction with a new item; checked by
`check_tower_training_data` right before the fit; new items then get the item tower's ID-less text-path
vector, from their genres alone with encoder `none`) and
caches the item-tower vectors and the user-tower scores on disk, keyed by the data fingerprint, the pools and
visible/hidden split, the model and trainer configuration and the encoder. `stand_in_recommender` is the cheap
truncated-SVD stand-in (tests), trained on `SimulationWorld.training` only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse.linalg

from explorec.data.processed import SPLIT_NAMES, ProcessedDataset, interactions_to_csr
from explorec.policies.semantic import normalize_rows
from explorec.simulation.churn import check_no_new_items, without_new_items
from explorec.simulation.ground_truth import LeakageError, check_no_leakage, restrict_dataset

if TYPE_CHECKING:
    from explorec.config import ExplorecConfig
    from explorec.simulation.environment import SimulationWorld

CACHE_FORMAT = 1
"""Bump when what a cached fit holds or how it is made changes, so old entries are not reused."""


@dataclass(frozen=True)
class RecommenderOutputs:
    """Item vectors (n_items, d) and raw scores (len(users), n_items) of `users` (higher = better)."""

    item_vectors: np.ndarray
    users: np.ndarray
    scores: np.ndarray
    name: str = "recommender"

    def __post_init__(self) -> None:
        if self.scores.shape != (self.users.size, self.item_vectors.shape[0]):
            raise ValueError(
                f"scores {self.scores.shape} must be (len(users)={self.users.size}, "
                f"n_items={self.item_vectors.shape[0]})"
            )

    def score(self, users: np.ndarray, history_splits: Sequence[str] = SPLIT_NAMES) -> np.ndarray:
        """Score rows of the given users (each must be among `users`), from every split it was trained on."""
        if tuple(history_splits) != SPLIT_NAMES:
            raise ValueError(
                f"simulator scores come from every split {SPLIT_NAMES}; asked for {history_splits}"
            )
        position = {int(u): row for row, u in enumerate(self.users)}
        missing = [int(u) for u in users if int(u) not in position]
        if missing:
            raise KeyError(f"no recommender scores for users {missing[:5]}")
        return self.scores[[position[int(u)] for u in users]]


def stand_in_recommender(
    *, training: pd.DataFrame, n_users: int, n_items: int, users: np.ndarray, dimension: int = 32
) -> RecommenderOutputs:
    """PureSVD on training positives: item vectors = normalised right singular vectors, scores x_u·V·Vᵀ."""
    matrix = interactions_to_csr(training, n_users=n_users, n_items=n_items).astype(np.float64)
    dimension = min(dimension, min(matrix.shape) - 1)
    _, _, right = scipy.sparse.linalg.svds(matrix, k=dimension, random_state=0)
    item_factors = right.T
    users = np.asarray(users, dtype=np.int64)
    scores = np.asarray(matrix[users] @ item_factors) @ item_factors.T
    return RecommenderOutputs(normalize_rows(item_factors), users, scores, name=f"pure_svd_{dimension}")


@dataclass(frozen=True)
class TowerFitInfo:
    """How the simulator's two-tower outputs were obtained: cache key and hit, fit time, validation NDCG."""

    cache_key: str
    cache_hit: bool
    fit_time_s: float
    epochs_run: int
    val_ndcg_at_10: float
    n_training_interactions: int
    path: str

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict."""
        return asdict(self)


def check_tower_training_data(dataset: ProcessedDataset, world: SimulationWorld) -> None:
    """Raise LeakageError when a split has a hidden positive, a simulated user's later rating or a new item.

    Later = after the time of that user's last visible positive (docs/design.md §6: the towers see all other
    users plus the visible part of the simulated users only). New = withheld in the churn world.
    """
    cutoff = world.visible.groupby("user_idx")["timestamp"].max()
    for name in SPLIT_NAMES:
        frame = dataset.split(name)
        check_no_leakage(training=frame, hidden=world.hidden)
        check_no_new_items(frame, world.arrivals, where=f"the towers' training ({name})")
        limit = frame["user_idx"].map(cutoff)
        late = frame[limit.notna() & (frame["timestamp"] > limit)]
        if len(late):
            first = late.iloc[0]
            raise LeakageError(
                f"{len(late)} interactions of simulated users after their visible cut-off would reach "
                f"training ({name}; e.g. user {int(first['user_idx'])}, item {int(first['item_idx'])})"
            )


def tower_training_dataset(dataset: ProcessedDataset, world: SimulationWorld) -> ProcessedDataset:
    """The data set the simulator's towers may be fitted on (restricted, new items removed, then checked)."""
    restricted = restrict_dataset(dataset, visible=world.visible, hidden=world.hidden)
    if world.arrivals.churns:
        restricted = replace(
            restricted,
            **{name: without_new_items(restricted.split(name), world.arrivals) for name in SPLIT_NAMES},
        )
    check_tower_training_data(restricted, world)
    return restricted


def simulator_fit_config(cfg: ExplorecConfig) -> ExplorecConfig:
    """The configuration of the simulator's fit: `cfg` with the simulator's own epoch budget."""
    return replace(cfg, trainer=replace(cfg.trainer, max_epochs=cfg.simulate.recommender_max_epochs))


def _digest(values: Any) -> str:
    """sha256 of a JSON-serialisable value (arrays as lists)."""
    blob = json.dumps(values, sort_keys=True, default=lambda v: np.asarray(v).tolist()).encode()
    return hashlib.sha256(blob).hexdigest()


def _pairs_digest(frame: pd.DataFrame) -> str:
    """sha256 of the sorted (user, item) pairs of a frame."""
    pairs = np.sort(frame["user_idx"].to_numpy(np.int64) * (1 << 32) + frame["item_idx"].to_numpy(np.int64))
    return hashlib.sha256(pairs.tobytes()).hexdigest()


def tower_cache_key(*, dataset: ProcessedDataset, world: SimulationWorld, cfg: ExplorecConfig) -> str:
    """Cache key of a restricted fit: data, split, pools and visible/hidden split, model, trainer, encoder."""
    fit_cfg = simulator_fit_config(cfg)
    trainer = {k: v for k, v in asdict(fit_cfg.trainer).items() if k != "enable_progress_bar"}
    encoder = {key: getattr(cfg.encoder, key) for key in ("name", "model", "normalize")}
    churn = {"new_items": world.arrivals.new_items} if world.arrivals.churns else {}  # static keys unchanged
    return _digest(
        {
            **churn,
            "format": CACHE_FORMAT,
            "data": dataset.fingerprint,
            "split": asdict(cfg.split),
            "pools": {"tune": world.pools.tune, "test": world.pools.test},
            "visible": _pairs_digest(world.visible),
            "hidden": _pairs_digest(world.hidden),
            "model": asdict(cfg.model),
            "trainer": trainer,
            "encoder": encoder,
            "seed": cfg.seed,
        }
    )[:24]


def _read_cached(folder: Path, name: str) -> tuple[RecommenderOutputs, dict[str, Any]] | None:
    """The outputs and fit facts stored in `folder`, or None if it is not a complete entry."""
    try:
        facts = json.loads((folder / "fit.json").read_text())
        outputs = RecommenderOutputs(
            np.load(folder / "item_vectors.npy"),
            np.load(folder / "users.npy"),
            np.load(folder / "scores.npy"),
            name,
        )
    except (OSError, ValueError):
        return None
    return outputs, facts


def _write_cached(folder: Path, outputs: RecommenderOutputs, facts: dict[str, Any]) -> None:
    """Write an entry to a temporary folder beside `folder`, then rename it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        np.save(scratch / "item_vectors.npy", outputs.item_vectors)
        np.save(scratch / "users.npy", outputs.users)
        np.save(scratch / "scores.npy", outputs.scores)
        (scratch / "fit.json").write_text(json.dumps(facts, indent=2))
        os.replace(scratch, folder)
    except OSError:
        if not folder.is_dir():
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def two_tower_recommender(
    *,
    dataset: ProcessedDataset,
    world: SimulationWorld,
    text_embeddings: np.ndarray | None,
    cfg: ExplorecConfig,
    cache_dir: Path,
) -> tuple[RecommenderOutputs, TowerFitInfo]:
    """The towers fitted on the restricted data set (or read from the cache): item vectors, user scores.

    `text_embeddings` feed the item tower (None for encoder `none`). Scores of every simulated user come
    from the user tower over their restricted history (all splits of the restricted data set).
    """
    key = tower_cache_key(dataset=dataset, world=world, cfg=cfg)
    folder = Path(cache_dir) / key
    name = f"two_tower[{cfg.encoder.name}]"
    cached = _read_cached(folder, name)
    if cached is not None:
        outputs, facts = cached
        return outputs, TowerFitInfo(**{**facts, "cache_key": key, "cache_hit": True, "path": str(folder)})
    from explorec.models.fit import MONITOR, fit_two_tower

    training = tower_training_dataset(dataset, world)
    with tempfile.TemporaryDirectory() as checkpoints:
        fit = fit_two_tower(
            training, text_embeddings, simulator_fit_config(cfg), checkpoint_dir=Path(checkpoints)
        )
        users = world.pools.simulated
        outputs = RecommenderOutputs(
            fit.item_vectors().astype(np.float64),
            users,
            fit.score(users, SPLIT_NAMES).astype(np.float64),
            name,
        )
    facts = {
        "fit_time_s": float(fit.fit_time_s),
        "epochs_run": int(fit.epochs_run),
        "val_ndcg_at_10": float(fit.best_metrics.get(MONITOR, float("nan"))),
        "n_training_interactions": int(sum(len(training.split(split)) for split in SPLIT_NAMES)),
    }
    _write_cached(folder, outputs, facts)
    return outputs, TowerFitInfo(**facts, cache_key=key, cache_hit=False, path=str(folder))
