"""The files a served recommender needs, as one in-memory bundle that can be saved, loaded and built.

A bundle holds the item vectors (item-tower outputs), the user tower's weights and shape, the catalogue
(item ids, titles, train popularity), every known user's history, the exploration policy and, when the
model had a text encoder, the item text embeddings (used by diversity metrics and text-based policies), and
a score calibration: σ(slope·score + intercept), fitted when the bundle is built, maps the user tower's
score to the probability that the item is among the user's next interactions (the reward scale LinUCB,
Thompson and linucb_novelty model; see `explorec.serving.recommender`).
Files in a bundle folder (`BUNDLE_FILES`): item_vectors.npy, user_tower.pt (a state dict, read back with
`torch.load(weights_only=True)`), model.json (tower shape, policy, format version), items.json,
histories.npz and optionally text_embeddings.npy and item_tower.pt: the item tower's weights without its ID
embeddings, which with `model.json`'s `item_tower` spec (shape, genre vocabulary, text encoder) turns the text
of an item added after training into a vector (`explorec.serving.new_items`). Only numpy, torch and json are
needed to load one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from explorec.policies.spec import PolicySpec
from explorec.serving.index import ItemIndex, read_index

if TYPE_CHECKING:
    from explorec.data.processed import ProcessedDataset
    from explorec.models.towers import UserTower

FORMAT_VERSION = 1
BUNDLE_FILES = ("item_vectors.npy", "user_tower.pt", "model.json", "items.json", "histories.npz")
TEXT_EMBEDDINGS_FILE = "text_embeddings.npy"
ITEM_TOWER_FILE = "item_tower.pt"
INDEX_FILE = "item_index.faiss"
TOWER_FIELDS = (
    "embedding_dim",
    "history_length",
    "attention_heads",
    "attention_layers",
    "mlp_layers",
    "dropout",
)
SERVING_HISTORY_SPLITS = ("train", "valid", "test")
"""Splits whose interactions make up a known user's history when serving (all of them by default)."""


@dataclass(frozen=True)
class ScoreCalibration:
    """σ(slope·score + intercept): a user-tower score as the probability of a next interaction."""

    slope: float
    intercept: float

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """Return the calibrated probabilities of `scores` (same shape)."""
        logits = self.slope * np.asarray(scores, dtype=np.float64) + self.intercept
        return 0.5 * (1.0 + np.tanh(0.5 * logits))  # the logistic function, without overflow warnings


@dataclass
class RecommenderBundle:
    """Everything `ExplorecRecommender` loads: vectors, user-tower weights, catalogue, histories, policy."""

    item_vectors: np.ndarray
    user_tower_state: dict[str, Any]
    tower_config: dict[str, Any]
    item_ids: list[str]
    titles: list[str]
    item_popularity: np.ndarray
    user_ids: list[str]
    history_offsets: np.ndarray
    history_items: np.ndarray
    policy: PolicySpec = field(default_factory=PolicySpec)
    text_embeddings: np.ndarray | None = None
    score_calibration: ScoreCalibration | None = None
    item_tower_state: dict[str, Any] | None = None
    item_tower_spec: dict[str, Any] | None = None
    """How new items get vectors: embedding_dim, mlp_layers, dropout, normalize, text_dim, genres, encoder."""
    item_index: ItemIndex | None = None
    """The faiss index serving retrieves candidates from (None: score every item, as older bundles do)."""

    @property
    def n_items(self) -> int:
        """Number of items in the catalogue."""
        return int(self.item_vectors.shape[0])

    def history(self, user_row: int) -> np.ndarray:
        """Return the item indices of known user `user_row`, oldest first."""
        return self.history_items[self.history_offsets[user_row] : self.history_offsets[user_row + 1]]

    def save(self, folder: Path) -> dict[str, Path]:
        """Write the bundle's files into `folder` and return {file name: path}."""
        import torch

        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "item_vectors.npy", np.asarray(self.item_vectors, dtype=np.float32))
        torch.save(self.user_tower_state, folder / "user_tower.pt")
        model = {"format_version": FORMAT_VERSION, "tower": self.tower_config, "policy": asdict(self.policy)}
        if self.score_calibration is not None:
            model["score_calibration"] = asdict(self.score_calibration)
        if self.item_tower_spec is not None:
            model["item_tower"] = self.item_tower_spec
        if self.item_index is not None:
            index = self.item_index
            model["index"] = {
                "kind": index.kind,
                "n_candidates": index.n_candidates,
                "retrieve_from": index.retrieve_from,
            }
        (folder / "model.json").write_text(json.dumps(model, indent=2))
        items = {"item_id": self.item_ids, "title": self.titles, "popularity": self.item_popularity.tolist()}
        (folder / "items.json").write_text(json.dumps(items))
        np.savez(
            folder / "histories.npz",
            user_ids=np.asarray(self.user_ids, dtype=str),
            offsets=self.history_offsets.astype(np.int64),
            items=self.history_items.astype(np.int64),
        )
        files = {name: folder / name for name in BUNDLE_FILES}
        if self.text_embeddings is not None:
            np.save(folder / TEXT_EMBEDDINGS_FILE, np.asarray(self.text_embeddings, dtype=np.float32))
            files[TEXT_EMBEDDINGS_FILE] = folder / TEXT_EMBEDDINGS_FILE
        if self.item_tower_state is not None:
            torch.save(self.item_tower_state, folder / ITEM_TOWER_FILE)
            files[ITEM_TOWER_FILE] = folder / ITEM_TOWER_FILE
        if self.item_index is not None:
            self.item_index.save(folder / INDEX_FILE)
            files[INDEX_FILE] = folder / INDEX_FILE
        return files


def load_bundle(files: Mapping[str, str | Path]) -> RecommenderBundle:
    """Read a bundle from {file name: path} as `RecommenderBundle.save` wrote it (weights-only)."""
    import torch

    model = json.loads(Path(files["model.json"]).read_text())
    if model.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"bundle format {model.get('format_version')} is not {FORMAT_VERSION}")
    items = json.loads(Path(files["items.json"]).read_text())
    histories = np.load(files["histories.npz"], allow_pickle=False)
    text = files.get(TEXT_EMBEDDINGS_FILE)
    item_tower = files.get(ITEM_TOWER_FILE)
    index = files.get(INDEX_FILE)
    calibration = model.get("score_calibration")  # absent in bundles written before it existed
    return RecommenderBundle(
        item_vectors=np.load(files["item_vectors.npy"], allow_pickle=False),
        user_tower_state=torch.load(files["user_tower.pt"], map_location="cpu", weights_only=True),
        tower_config=model["tower"],
        item_ids=[str(item) for item in items["item_id"]],
        titles=[str(title) for title in items["title"]],
        item_popularity=np.asarray(items["popularity"], dtype=np.float64),
        user_ids=[str(user) for user in histories["user_ids"]],
        history_offsets=histories["offsets"],
        history_items=histories["items"],
        policy=PolicySpec(**model["policy"]),
        text_embeddings=None if text is None else np.load(text, allow_pickle=False),
        score_calibration=None if calibration is None else ScoreCalibration(**calibration),
        item_tower_state=None
        if item_tower is None
        else torch.load(item_tower, map_location="cpu", weights_only=True),
        item_tower_spec=model.get("item_tower"),
        item_index=None
        if index is None
        else read_index(Path(index), model["index"]["n_candidates"], model["index"]["retrieve_from"]),
    )


def build_user_tower(bundle: RecommenderBundle) -> UserTower:
    """Return the bundle's user tower in eval mode with its weights loaded."""
    from explorec.models.towers import UserTower

    shape = {key: bundle.tower_config[key] for key in TOWER_FIELDS}
    pooling = bundle.tower_config.get("pooling", "attention")  # bundles written before pooling was recorded
    tower = UserTower(**shape, pooling=pooling, n_users=bundle.tower_config.get("n_users"))
    tower.load_state_dict(bundle.user_tower_state)
    return tower.eval()


def tower_config(model_cfg: Any, n_users: int | None) -> dict[str, Any]:
    """Return the user tower's constructor arguments from a ModelConfig (n_users only with user IDs).

    Pass the config resolved for the split (`resolve_model_config(cfg.model, cfg.split.name)`): an `auto`
    pooling left in it is resolved as for a chronological split, as `build_two_tower` does.
    """
    from explorec.models.fit import resolve_model_config

    if getattr(model_cfg, "separate_input_items", False):
        raise ValueError(
            "a model with separate input item representations (model.separate_input_items) cannot be "
            "bundled: serving reads a user's history through the served (output) item vectors"
        )
    values = {key: getattr(model_cfg, key) for key in TOWER_FIELDS}
    values["pooling"] = resolve_model_config(model_cfg).user_pooling
    values["n_users"] = n_users if model_cfg.use_user_id else None
    return values


def catalogue(dataset: ProcessedDataset) -> tuple[list[str], list[str], np.ndarray]:
    """Return item ids, titles and train popularity (interaction counts) in item-index order."""
    items = dataset.items.sort_values("item_idx")
    ids = items["item_id"] if "item_id" in items else items["item_idx"]
    titles = items.get("title", ids)
    popularity = np.bincount(dataset.train["item_idx"].to_numpy(), minlength=dataset.n_items)
    return ids.astype(str).tolist(), titles.fillna("").astype(str).tolist(), popularity.astype(np.float64)


def user_histories(
    dataset: ProcessedDataset, splits: Sequence[str]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Return user ids, offsets and items (time order) of every user's interactions in `splits`."""
    sequences = dataset.sequences(*splits)
    users = dataset.users.sort_values("user_idx")
    ids = users["user_id"] if "user_id" in users else users["user_idx"]
    return ids.astype(str).tolist(), sequences.offsets, sequences.items
