"""The frozen pretrained text encoder of the item tower, with an on-disk cache keyed by (model, text hash).

The cache holds one `.npz` per model id (text hashes + float32 embeddings). A rerun encodes nothing and a
partly new text list encodes only the new texts; the model is loaded only when something is missing.
Writes go to a temporary file that is renamed, so a crash never leaves a torn cache.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from explorec.config import EncoderConfig, ExplorecConfig, resolve
from explorec.encoders.packaged import packaged_model_path
from explorec.progress import Progress, quiet_libraries

if TYPE_CHECKING:
    from explorec.data.processed import ProcessedDataset

NO_ENCODER = "none"


class SentenceEncoder(Protocol):
    """What explorec needs of a sentence-transformers model: `encode` of a list of texts."""

    def encode(self, sentences: list[str], **kwargs: object) -> np.ndarray:
        """Return one embedding row per sentence."""
        ...


EncoderFactory = Callable[[EncoderConfig], SentenceEncoder]


def text_hash(text: str) -> str:
    """Return the sha256 hex digest of a text (the cache key of its embedding)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_file(cfg: EncoderConfig, cache_dir: Path) -> Path:
    """Return the cache file of the encoder `cfg` (one file per model id and normalisation)."""
    model_id = f"{cfg.model}|normalize={cfg.normalize}"
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", cfg.model).strip("_")[-60:] or "model"
    return Path(cache_dir) / f"{readable}-{hashlib.sha256(model_id.encode()).hexdigest()[:12]}.npz"


def load_sentence_transformer(cfg: EncoderConfig) -> SentenceEncoder:
    """Load the sentence-transformers model named by `cfg.model` (packaged models load offline)."""
    folder = packaged_model_path(cfg.model, unpack_dir=resolve(cfg.unpack_dir))
    if folder is not None:
        os.environ["HF_HUB_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    if folder is not None:
        return SentenceTransformer(str(folder), device=cfg.device, local_files_only=True)
    return SentenceTransformer(cfg.model, device=cfg.device)


def read_cache(path: Path) -> dict[str, np.ndarray]:
    """Return the cached embeddings of a cache file as {text hash: vector} (empty when absent)."""
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as stored:
        hashes, vectors = stored["hashes"], stored["embeddings"]
    return {str(key): vector for key, vector in zip(hashes, vectors, strict=True)}


def write_cache(path: Path, cached: dict[str, np.ndarray]) -> None:
    """Write {text hash: vector} to `path` atomically (temporary file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    hashes = np.array(list(cached), dtype="U64")
    vectors = np.stack(list(cached.values())).astype(np.float32)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp.npz")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, hashes=hashes, embeddings=vectors)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def length_order(texts: Sequence[str]) -> np.ndarray:
    """Indices of `texts` longest first (ties in input order), as sentence-transformers orders one call."""
    return np.argsort([-len(text) for text in texts], kind="stable")


def encode_in_batches(encoder: SentenceEncoder, texts: list[str], cfg: EncoderConfig) -> np.ndarray:
    """Encode `texts` batch by batch with progress lines on stderr; return float32 [len(texts), dim].

    Batches are cut from the texts sorted by length, so each batch pads to a length close to all of its
    texts: one `encode` call per batch (for progress lines) would otherwise pad each batch of input-order
    texts to its longest one, several times the work on texts of mixed length (docs/design.md §4).
    """
    progress = Progress("encoding item text", len(texts), unit="texts", enabled=cfg.show_progress)
    progress.start(f"model {cfg.model}, batches of {cfg.batch_size}")
    order = length_order(texts)
    ordered = [texts[index] for index in order]
    chunks = []
    for start in range(0, len(ordered), cfg.batch_size):
        batch = ordered[start : start + cfg.batch_size]
        vectors = encoder.encode(
            batch,
            batch_size=cfg.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
            normalize_embeddings=cfg.normalize,
        )
        chunks.append(np.asarray(vectors, dtype=np.float32))
        progress.advance(len(batch))
    progress.finish()
    vectors = np.concatenate(chunks, axis=0)
    result = np.empty_like(vectors)
    result[order] = vectors  # back to input order
    return result


def encode_texts(
    texts: Sequence[str],
    cfg: EncoderConfig,
    *,
    cache_dir: Path,
    encoder_factory: EncoderFactory = load_sentence_transformer,
) -> np.ndarray | None:
    """Return float32 [len(texts), dim] embeddings of `texts`, encoding only those not cached yet.

    `cfg.name == "none"` (the ID-only ablation) returns None. Rows are L2-normalised when `cfg.normalize`.
    """
    if cfg.name == NO_ENCODER:
        return None
    path = cache_file(cfg, cache_dir)
    cached = read_cache(path)
    keys = [text_hash(text) for text in texts]
    missing = {key: text for key, text in zip(keys, texts, strict=True) if key not in cached}
    if missing:
        import torch

        quiet_libraries()  # before transformers is imported: no weight-loading bar

        torch.set_num_threads(cfg.num_threads)
        encoder = encoder_factory(cfg)
        vectors = encode_in_batches(encoder, list(missing.values()), cfg)
        cached.update(zip(missing, vectors, strict=True))
        write_cache(path, cached)
    if not keys:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([cached[key] for key in keys]).astype(np.float32)


def item_text_embeddings(dataset: ProcessedDataset, cfg: ExplorecConfig) -> np.ndarray | None:
    """Return the frozen text embeddings of every item in index order (None for encoder `none`), cached."""
    texts = dataset.items.sort_values("item_idx")["text"].tolist()
    return encode_texts(texts, cfg.encoder, cache_dir=resolve(cfg.encoder.cache_dir))
