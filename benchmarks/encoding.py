"""Item-text encoding: the project's path against a bare `SentenceTransformer.encode`, same texts and threads.

For each data set the item texts are read through the project's data loading (preprocessed once, cached
under EXPLOREC_HOME). Prints the texts' lengths (characters, tokens, share cut at max_seq_length), then
items/s of a bare `encode` of all texts in one call (sentence-transformers sorts them by length inside the
call) and of the project's `encode_in_batches` (length-sorted batches, one call each), alternating, the
best of `--repeats` runs each; then, on the first `--sample` texts (the old path is slow), batches in input
order (the project's path before the fix) against a bare call on them, and `encode_texts` on an empty cache
and again on the filled one. Every path runs with the same torch thread count; the largest difference to
the bare vectors is printed too. `--limit` encodes a seeded random subset (a busy machine).

    nice python benchmarks/encoding.py --threads 2 --data ml100k ml_latest_small_tmdb [--limit 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from explorec.config import EncoderConfig, compose
from explorec.data.loading import load_dataset
from explorec.encoders.text import SentenceEncoder, encode_in_batches, encode_texts, load_sentence_transformer


def item_texts(data: str) -> list[str]:
    """The encoder's item texts of a data set, in item order, through the project's loading."""
    dataset = load_dataset(compose([f"data={data}"]))
    return dataset.items.sort_values("item_idx")["text"].tolist()


def input_order_batches(encoder: SentenceEncoder, texts: list[str], cfg: EncoderConfig) -> np.ndarray:
    """The project's path before the fix: one `encode` call per batch of texts in input order."""
    chunks = [
        encoder.encode(
            texts[start : start + cfg.batch_size],
            batch_size=cfg.batch_size,
            normalize_embeddings=cfg.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        for start in range(0, len(texts), cfg.batch_size)
    ]
    return np.concatenate(chunks).astype(np.float32)


def timed(run: Callable[[], np.ndarray | None]) -> tuple[float, np.ndarray | None]:
    """(seconds, result) of one call."""
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def describe_lengths(model: SentenceEncoder, texts: list[str]) -> str:
    """Characters and tokens per text, and the share longer than the model's max_seq_length."""
    tokens = np.asarray([len(ids) for ids in model.tokenizer(texts)["input_ids"]])  # type: ignore[attr-defined]
    chars = np.asarray([len(text) for text in texts])
    limit = model.max_seq_length  # type: ignore[attr-defined]
    return (
        f"{len(texts)} texts; characters median {np.median(chars):.0f}, max {chars.max()}; tokens median "
        f"{np.median(tokens):.0f}, p90 {np.percentile(tokens, 90):.0f}, max {tokens.max()}; "
        f"{np.mean(tokens > limit):.1%} cut at max_seq_length {limit}"
    )


def bare_encode(model: SentenceEncoder, texts: list[str], cfg: EncoderConfig) -> np.ndarray:
    """One bare `SentenceTransformer.encode` call over all texts."""
    return model.encode(
        texts,
        batch_size=cfg.batch_size,
        normalize_embeddings=cfg.normalize,
        convert_to_numpy=True,
        show_progress_bar=False,
    )


def measure(
    model: SentenceEncoder, cfg: EncoderConfig, data: str, *, n_sample: int, limit: int | None, repeats: int
) -> None:
    """Print the comparison for one data set (a seeded random `limit` of its texts when given)."""
    texts = item_texts(data)
    if limit is not None and limit < len(texts):
        picks = np.sort(np.random.default_rng(0).choice(len(texts), size=limit, replace=False))
        texts = [texts[index] for index in picks]
        print(f"\n{data}: a seeded random {limit} of its texts", flush=True)
    print(f"\n{data}: {describe_lengths(model, texts)}", flush=True)
    bare_s = ours_s = float("inf")
    for _ in range(repeats):  # alternate the two paths; the best of each (a shared machine's load varies)
        seconds, bare = timed(lambda: bare_encode(model, texts, cfg))
        bare_s = min(bare_s, seconds)
        seconds, ours = timed(lambda: encode_in_batches(model, texts, cfg))
        ours_s = min(ours_s, seconds)
    print(
        f"  bare SentenceTransformer.encode: {len(texts) / bare_s:8.1f} items/s ({bare_s:.1f} s)", flush=True
    )
    print(
        f"  project encode_in_batches:       {len(texts) / ours_s:8.1f} items/s ({ours_s:.1f} s), "
        f"{bare_s / ours_s:.2f}x bare; max |diff| {np.abs(ours - bare).max():.2e}",
        flush=True,
    )
    sample = texts[:n_sample]
    bare_sample_s, _ = timed(lambda: bare_encode(model, sample, cfg))
    old_s, old = timed(lambda: input_order_batches(model, sample, cfg))
    print(
        f"  before the fix (input-order batches), first {len(sample)} texts: "
        f"{len(sample) / old_s:.1f} items/s vs bare {len(sample) / bare_sample_s:.1f} items/s on them; "
        f"max |diff| {np.abs(old - bare[: len(sample)]).max():.2e}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as cache:
        cold_s, _ = timed(lambda: encode_texts(sample, cfg, cache_dir=Path(cache)))
        warm_s, _ = timed(lambda: encode_texts(sample, cfg, cache_dir=Path(cache)))
    print(f"  encode_texts on them: empty cache {cold_s:.1f} s (model load included), rerun {warm_s:.3f} s")


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", nargs="+", default=["ml100k", "ml_latest_small_tmdb"])
    parser.add_argument("--sample", type=int, default=640, help="texts for the pre-fix path and the cache")
    parser.add_argument("--limit", type=int, default=None, help="encode a random subset of this many texts")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each path; best is kept")
    args = parser.parse_args()
    cfg = EncoderConfig(num_threads=args.threads, show_progress=False)
    torch.set_num_threads(args.threads)
    model = load_sentence_transformer(cfg)
    print(
        f"model {cfg.model}, batch_size {cfg.batch_size}, torch threads {torch.get_num_threads()}", flush=True
    )
    for data in args.data:
        measure(model, cfg, data, n_sample=args.sample, limit=args.limit, repeats=args.repeats)


if __name__ == "__main__":
    main()
