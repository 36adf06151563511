"""Tests of the cached text encoder: cache hits, partial re-encoding, the `none` ablation, the real MiniLM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from explorec.config import EncoderConfig
from explorec.encoders.text import cache_file, encode_texts


class CountingEncoder:
    """A fake sentence encoder: a deterministic vector per text, and a log of every text it encoded."""

    def __init__(self, dim: int = 8) -> None:
        self.dim = dim
        self.encoded: list[str] = []

    def encode(self, sentences: list[str], **kwargs: object) -> np.ndarray:
        """Return a seeded random unit vector per sentence and record the sentences."""
        self.encoded.extend(sentences)
        rows = [np.random.default_rng(sum(map(ord, text))).normal(size=self.dim) for text in sentences]
        matrix = np.stack(rows).astype(np.float32)
        return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


@pytest.fixture
def fake() -> CountingEncoder:
    """Return a fresh counting encoder."""
    return CountingEncoder()


def _encode(texts: list[str], tmp_path: Path, fake: CountingEncoder, **overrides: object) -> np.ndarray:
    """Encode `texts` with the fake encoder and a small batch size."""
    cfg = EncoderConfig(batch_size=2, show_progress=False, **overrides)  # type: ignore[arg-type]
    result = encode_texts(texts, cfg, cache_dir=tmp_path, encoder_factory=lambda _: fake)
    assert result is not None
    return result


def test_second_call_encodes_nothing(tmp_path: Path, fake: CountingEncoder) -> None:
    texts = ["a | Drama", "b | Comedy", "c | Action"]
    first = _encode(texts, tmp_path, fake)
    assert sorted(fake.encoded) == sorted(texts)  # encoded longest first; returned in input order
    second = _encode(texts, tmp_path, fake)
    assert sorted(fake.encoded) == sorted(texts)
    np.testing.assert_array_equal(first, second)


def test_only_new_texts_are_encoded_and_order_follows_the_input(
    tmp_path: Path, fake: CountingEncoder
) -> None:
    first = _encode(["a", "b"], tmp_path, fake)
    mixed = _encode(["c", "b", "a", "c"], tmp_path, fake)
    assert fake.encoded == ["a", "b", "c"]
    np.testing.assert_array_equal(mixed[1], first[1])
    np.testing.assert_array_equal(mixed[2], first[0])
    np.testing.assert_array_equal(mixed[0], mixed[3])
    assert mixed.dtype == np.float32
    assert mixed.shape == (4, 8)


def test_encoder_loaded_only_when_something_is_missing(tmp_path: Path, fake: CountingEncoder) -> None:
    _encode(["a"], tmp_path, fake)
    cfg = EncoderConfig(show_progress=False)

    def must_not_load(_: EncoderConfig) -> CountingEncoder:
        raise AssertionError("the model was loaded although everything was cached")

    result = encode_texts(["a"], cfg, cache_dir=tmp_path, encoder_factory=must_not_load)
    assert result is not None
    assert result.shape == (1, 8)


def test_cache_is_keyed_by_model(tmp_path: Path) -> None:
    one = cache_file(EncoderConfig(model="org/model-a"), tmp_path)
    other = cache_file(EncoderConfig(model="org/model-b"), tmp_path)
    assert one != other
    assert one.parent == tmp_path


def test_no_stray_temporary_files(tmp_path: Path, fake: CountingEncoder) -> None:
    cache_dir = tmp_path / "cache"
    _encode(["a", "b"], cache_dir, fake)
    _encode(["c"], cache_dir, fake)
    assert [path.name for path in cache_dir.iterdir()] == [cache_file(EncoderConfig(), cache_dir).name]


def test_encoder_none_returns_none(tmp_path: Path, fake: CountingEncoder) -> None:
    cfg = EncoderConfig(name="none", model="none")
    assert encode_texts(["a"], cfg, cache_dir=tmp_path, encoder_factory=lambda _: fake) is None
    assert fake.encoded == []


def test_packaged_minilm_loads_offline_and_normalises(tmp_path: Path) -> None:
    cfg = EncoderConfig(show_progress=False, num_threads=2)
    vectors = encode_texts(
        ["Toy Story (1995) | Animation", "Heat (1995) | Crime", "x"], cfg, cache_dir=tmp_path
    )
    assert vectors is not None
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_batches_sorted_by_length_keep_input_order_and_embeddings() -> None:
    """Texts of mixed lengths, encoded in length-sorted batches, get the vectors each text gets alone."""
    from explorec.encoders.text import encode_in_batches, load_sentence_transformer

    cfg = EncoderConfig(show_progress=False, num_threads=2, batch_size=4)
    story = "an old film about a family a war a city and the people who love and leave it"
    words = story.split(" ")
    texts = [" ".join(words[: 1 + (7 * i) % len(words)]) + f" | item {i}" for i in range(13)]
    model = load_sentence_transformer(cfg)
    batched = encode_in_batches(model, texts, cfg)
    alone = np.stack([model.encode([text], normalize_embeddings=True)[0] for text in texts])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    assert batched.dtype == np.float32 and batched.shape == (13, 384)
