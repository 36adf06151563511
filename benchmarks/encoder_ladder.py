"""Encoding time per rung of the encoder ladder (none, minilm, mpnet) on each data set's item texts.

For each data set the item texts come through the project's loading (preprocessed once under EXPLOREC_HOME).
For each rung: the model's load time (for mpnet the first load also verifies and unpacks the packaged parts
into encoder.unpack_dir, unless already there), then `encode_texts` on an empty embedding cache (the project's
path: length-sorted batches, model load included), then the same call again on the filled cache, with a
factory that fails if the model is loaded (a rerun must encode nothing). Prints items/s, the embedding size
and the rows' norms. With `--fresh-unpack` mpnet is unpacked into a new temporary folder (its first load
pays for the unpacking); `--limit N` encodes a seeded random N of each set's texts (a busy machine). Run
with `nice` and a fresh EXPLOREC_HOME:

    nice -n 5 python benchmarks/encoder_ladder.py --threads 2 --data ml100k ml_latest_small_tmdb
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from explorec.config import EncoderConfig, compose
from explorec.data.loading import load_dataset
from explorec.encoders.text import encode_texts, load_sentence_transformer


def item_texts(data: str, limit: int | None) -> list[str]:
    """The encoder's item texts of a data set in item order (a seeded random `limit` of them when given)."""
    dataset = load_dataset(compose([f"data={data}"]))
    texts = dataset.items.sort_values("item_idx")["text"].tolist()
    if limit is None or limit >= len(texts):
        return texts
    picks = np.sort(np.random.default_rng(0).choice(len(texts), size=limit, replace=False))
    return [texts[index] for index in picks]


def must_not_load(_: EncoderConfig) -> None:
    """An encoder factory for the rerun: loading the model there would mean the cache missed."""
    raise AssertionError("the rerun loaded the model: the embedding cache missed")


def measure(rung: str, texts: list[str], data: str, threads: int, unpack_dir: str | None) -> None:
    """Print load time, cold and warm `encode_texts` time of one rung on one data set."""
    overrides = [f"encoder={rung}", f"encoder.num_threads={threads}", "encoder.show_progress=false"]
    cfg = compose(overrides + ([f"encoder.unpack_dir={unpack_dir}"] if unpack_dir else [])).encoder
    if rung == "none":
        print(f"  {rung:7s} {data}: no text encoder (0 s, no embeddings)", flush=True)
        return
    started = time.perf_counter()
    load_sentence_transformer(cfg)
    load_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        vectors = encode_texts(texts, cfg, cache_dir=Path(cache))
        cold_s = time.perf_counter() - started
        started = time.perf_counter()
        again = encode_texts(texts, cfg, cache_dir=Path(cache), encoder_factory=must_not_load)  # type: ignore[arg-type]
        warm_s = time.perf_counter() - started
    assert vectors is not None and again is not None
    norms = np.linalg.norm(vectors, axis=1)
    print(
        f"  {rung:7s} {data}: {len(texts)} texts, dim {vectors.shape[1]}, norms {norms.min():.4f}–"
        f"{norms.max():.4f}; model load {load_s:.1f} s; encode_texts on an empty cache {cold_s:.1f} s "
        f"({len(texts) / cold_s:.1f} items/s, load included); rerun {warm_s:.3f} s (model not loaded), "
        f"identical: {np.array_equal(vectors, again)}",
        flush=True,
    )


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", nargs="+", default=["ml100k", "ml_latest_small_tmdb"])
    parser.add_argument("--rungs", nargs="+", default=["none", "minilm", "mpnet"])
    parser.add_argument("--limit", type=int, default=None, help="a seeded random subset of this many texts")
    parser.add_argument(
        "--fresh-unpack", action="store_true", help="unpack mpnet into a new temporary folder"
    )
    args = parser.parse_args()
    unpack = tempfile.TemporaryDirectory() if args.fresh_unpack else None
    torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}", flush=True)
    for data in args.data:
        texts = item_texts(data, args.limit)
        print(
            f"\n{data}: {len(texts)} item texts{' (seeded random subset)' if args.limit else ''}", flush=True
        )
        for rung in args.rungs:
            measure(rung, texts, data, args.threads, unpack.name if unpack else None)


if __name__ == "__main__":
    main()
