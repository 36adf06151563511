"""Items added after training: their text → the bundle's own encoder → the item tower without an ID embedding.

This is what the model does for an item it never saw in training (`ItemTower` zeroes the ID part of an
unknown item), so a new item's vector is the one a retrained tower's text path would give it today. The
spec (`RecommenderBundle.item_tower_spec`) is written at packaging: tower shape, text dimension, the genre
vocabulary (genres outside it are ignored, as an unseen genre has no column) and the encoder's settings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from explorec.config import EncoderConfig
from explorec.encoders.text import SentenceEncoder, encode_in_batches, load_sentence_transformer

if TYPE_CHECKING:
    import torch

    from explorec.serving.bundle import RecommenderBundle

TOWER_ONLY_KEYS = ("id_embedding.weight", "known_items", "text_embeddings", "genre_features")
"""Item-tower state that is per trained item (IDs, buffers), not part of the text path."""


class NewItemsUnsupportedError(ValueError):
    """The model cannot embed new items (no text encoder, or a bundle written before new items existed)."""


@dataclass(frozen=True)
class NewItem:
    """An item to add to the catalogue: its id, title, encoder text and optional genres."""

    item_id: str
    title: str
    text: str
    genres: tuple[str, ...] = ()


def item_tower_spec(
    model_cfg: Any, encoder: EncoderConfig, text_dim: int | None, genres: Sequence[str] | None
) -> dict[str, Any]:
    """The `item_tower` entry of a bundle's model.json."""
    return {
        "embedding_dim": int(model_cfg.embedding_dim),
        "mlp_layers": int(model_cfg.mlp_layers),
        "dropout": float(model_cfg.dropout),
        "normalize": bool(model_cfg.normalize_items),
        "text_dim": text_dim,
        "genres": None if genres is None else list(genres),
        "encoder": {item.name: getattr(encoder, item.name) for item in fields(EncoderConfig)},
    }


def text_path_state(item_tower_state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The item tower's weights without its per-item parts (ID embeddings and buffers)."""
    return {
        key: value.detach().cpu().clone()
        for key, value in item_tower_state.items()
        if key not in TOWER_ONLY_KEYS
    }


def genre_rows(items: Sequence[NewItem], vocabulary: Sequence[str]) -> np.ndarray:
    """Multi-hot [n, len(vocabulary)] of the items' genres (genres outside the vocabulary ignored)."""
    column = {genre: index for index, genre in enumerate(vocabulary)}
    rows = np.zeros((len(items), len(vocabulary)), dtype=np.float32)
    for row, item in enumerate(items):
        rows[row, [column[name] for name in item.genres if name in column]] = 1.0
    return rows


class NewItemEmbedder:
    """Turns new items' texts into item vectors with a bundle's encoder and item tower."""

    def __init__(
        self,
        bundle: RecommenderBundle,
        encoder_factory: Callable[[EncoderConfig], SentenceEncoder] = load_sentence_transformer,
    ) -> None:
        spec, state = bundle.item_tower_spec, bundle.item_tower_state
        if spec is None or state is None:
            raise NewItemsUnsupportedError("this model was packaged without its item tower; re-register it")
        if spec.get("text_dim") is None:
            raise NewItemsUnsupportedError("this model has no text tower (encoder none): new items need text")
        self.spec, self.state = spec, state
        self.encoder_cfg = EncoderConfig(**{**spec["encoder"], "show_progress": False})
        self._encoder_factory = encoder_factory
        self._encoder: SentenceEncoder | None = None

    def warm_up(self) -> None:
        """Load the text encoder now, so the first added item does not pay for it."""
        if self._encoder is None:
            self._encoder = self._encoder_factory(self.encoder_cfg)

    def embed(self, items: Sequence[NewItem]) -> tuple[np.ndarray, np.ndarray]:
        """Return (item vectors [n, d], text embeddings [n, t]) of `items`."""
        import torch

        from explorec.models.towers import ItemTower

        self.warm_up()
        assert self._encoder is not None
        texts = encode_in_batches(self._encoder, [item.text for item in items], self.encoder_cfg)
        vocabulary = self.spec.get("genres")
        genres = None if vocabulary is None else torch.from_numpy(genre_rows(items, vocabulary))
        tower = ItemTower(
            n_items=len(items),
            embedding_dim=self.spec["embedding_dim"],
            known_items=torch.zeros(len(items), dtype=torch.bool),
            text_embeddings=torch.from_numpy(texts),
            genre_features=genres,
            mlp_layers=self.spec["mlp_layers"],
            dropout=self.spec["dropout"],
            id_dropout=0.0,
            normalize=self.spec["normalize"],
        )
        missing, unexpected = tower.load_state_dict(self.state, strict=False)
        if unexpected or set(missing) - set(TOWER_ONLY_KEYS):
            raise NewItemsUnsupportedError(
                f"the bundle's item tower does not fit its spec (missing {missing}, unexpected {unexpected})"
            )
        with torch.inference_mode():
            vectors = tower.eval()(torch.arange(len(items))).numpy()
        return vectors.astype(np.float32), texts
