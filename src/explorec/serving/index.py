"""The served item index: faiss inner-product search over the item vectors, exact or HNSW by catalogue size.

`build_index` makes an exact `IndexFlatIP` for catalogues below `IndexConfig.exact_below` items and an
`IndexHNSWFlat` (inner product) above; both are written into the bundle as one faiss file. The index stores
index rows; `ItemIndex.items` maps each row to its catalogue item, so an item whose vector changes after
training (`Recommender.add_items` with a known id) gets a new row and its old row is left behind: a stale
row may still be retrieved, but serving re-scores every candidate with the current vector and drops
duplicates, so it only costs a slot of the candidate list. `recall_at_k` measures the index against exact
search for a sample of user vectors (logged on the model version at packaging).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from explorec.config.registry import IndexConfig

EXACT = "flat_ip"
HNSW = "hnsw"


@dataclass
class ItemIndex:
    """A faiss index over item vectors and, per index row, the catalogue item it stands for."""

    index: object
    items: np.ndarray
    ef_search: int
    n_candidates: int
    """Items a request retrieves for its policy (`IndexConfig.n_candidates`, kept in the bundle)."""
    retrieve_from: int
    """Smallest catalogue served from retrieved candidates (`IndexConfig.retrieve_from`, kept too)."""

    @property
    def kind(self) -> str:
        """`flat_ip` (exact) or `hnsw`."""
        return HNSW if hasattr(self.index, "hnsw") else EXACT

    @property
    def n_rows(self) -> int:
        """Rows in the index (items, plus stale rows of items whose vector was replaced)."""
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, n: int) -> np.ndarray:
        """Return per query the catalogue items of its best `n` rows, best first (int64, -1 where none)."""
        import faiss

        queries = np.ascontiguousarray(queries, dtype=np.float32)
        n = min(n, self.n_rows)
        params = None
        if self.kind == HNSW:
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, n))
        _, rows = self.index.search(queries, n, params=params)
        return np.where(rows >= 0, self.items[np.maximum(rows, 0)], -1)

    def add(self, vectors: np.ndarray, items: np.ndarray) -> None:
        """Append index rows for `items` with their (new) vectors."""
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self.items = np.concatenate([self.items, np.asarray(items, dtype=np.int64)])

    def save(self, path: Path) -> None:
        """Write the faiss index to `path` (the row map is the identity at packaging and is not stored)."""
        import faiss

        if not np.array_equal(self.items, np.arange(self.items.size)):
            raise ValueError("only an index whose rows are the catalogue in order can be saved")
        faiss.write_index(self.index, str(path))


def build_index(vectors: np.ndarray, cfg: IndexConfig) -> ItemIndex:
    """Index `vectors` [n_items, d] for inner product: exact below `cfg.exact_below` items, else HNSW."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dimension = vectors.shape[1]
    if vectors.shape[0] < cfg.exact_below:
        index = faiss.IndexFlatIP(dimension)
    else:
        index = faiss.IndexHNSWFlat(dimension, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = cfg.ef_construction
        index.hnsw.efSearch = cfg.ef_search
    index.add(vectors)
    rows = np.arange(vectors.shape[0], dtype=np.int64)
    return ItemIndex(index, rows, cfg.ef_search, cfg.n_candidates, cfg.retrieve_from)


def read_index(path: Path, n_candidates: int, retrieve_from: int) -> ItemIndex:
    """Read an index `ItemIndex.save` wrote (its HNSW efSearch as stored)."""
    import faiss

    index = faiss.read_index(str(path))
    ef_search = int(index.hnsw.efSearch) if hasattr(index, "hnsw") else 0
    rows = np.arange(index.ntotal, dtype=np.int64)
    return ItemIndex(index, rows, ef_search, n_candidates, retrieve_from)


def exact_top_k(queries: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    """Per query, the k items of largest inner product (a set, unordered), in blocks of ~16M scores."""
    block = max(1, 16_000_000 // max(vectors.shape[0], 1))
    found = []
    for start in range(0, queries.shape[0], block):
        scores = queries[start : start + block] @ vectors.T
        found.append(np.argpartition(-scores, k - 1, axis=1)[:, :k])
    return np.concatenate(found)


def recall_at_k(index: ItemIndex, queries: np.ndarray, vectors: np.ndarray, k: int = 10) -> float:
    """Mean share of each query's exact top k that the index's top k finds (1.0 for an exact index)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    exact = exact_top_k(queries, np.asarray(vectors, dtype=np.float32), k)
    found = index.search(queries, k)
    hits = [np.intersect1d(row, truth).size for row, truth in zip(found, exact, strict=True)]
    return float(np.mean(hits)) / k
