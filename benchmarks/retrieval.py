"""Retrieval at catalogue scale: a 1M-item catalogue of random unit vectors (64-d) served through the index.

Prints the index build time, its recall@10 against exact search (on user-tower vectors of known users),
the model-load time (what the pyfunc's `load_context` does: read the bundle, build the recommender,
precompute known users' vectors) and the in-process p50/p99 of one k=10 request with exploration, per
policy. Targets (issue 16): p99 ≤ 10 ms, recall@10 ≥ 0.95, load ≤ 30 s.

    nice python benchmarks/retrieval.py --items 1000000 --users 10000 [--index-file /tmp/items.faiss]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import torch

from explorec.config import ModelConfig
from explorec.config.registry import IndexConfig
from explorec.models.towers import UserTower
from explorec.policies.spec import PolicySpec
from explorec.serving.bundle import RecommenderBundle, tower_config
from explorec.serving.index import build_index, read_index, recall_at_k
from explorec.serving.latency import in_process_latency
from explorec.serving.pyfunc import ExplorecRecommender


def synthetic_catalogue(n_items: int, n_users: int, history: int, seed: int) -> RecommenderBundle:
    """A bundle of `n_items` random unit item vectors and `n_users` users with random histories."""
    rng = np.random.default_rng(seed)
    model_cfg = ModelConfig(embedding_dim=64)
    tower = tower_config(model_cfg, n_users)
    torch.manual_seed(seed)
    user_tower = UserTower(**{key: value for key, value in tower.items() if key != "n_users"})
    vectors = rng.standard_normal((n_items, model_cfg.embedding_dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    histories = np.stack([rng.choice(n_items, size=history, replace=False) for _ in range(n_users)])
    return RecommenderBundle(
        item_vectors=vectors,
        user_tower_state=user_tower.state_dict(),
        tower_config=tower,
        item_ids=[f"i{item}" for item in range(n_items)],
        titles=[f"Item {item}" for item in range(n_items)],
        item_popularity=rng.poisson(3.0, size=n_items).astype(np.float64),
        user_ids=[f"u{user}" for user in range(n_users)],
        history_offsets=np.arange(0, (n_users + 1) * history, history, dtype=np.int64),
        history_items=histories.reshape(-1).astype(np.int64),
    )


def requests(n_users: int, count: int, seed: int) -> list[dict]:
    """`count` single k=10 requests of random known users (90%) and new users (10%), seeded."""
    rng = np.random.default_rng(seed)
    users = [f"u{rng.integers(n_users)}" if rng.random() < 0.9 else f"new{index}" for index in range(count)]
    return [{"user_id": user, "k": 10, "seed": index} for index, user in enumerate(users)]


def full_ranking_comparison(n_users: int, n_items: int, history: int, seed: int, k: int = 20) -> str:
    """Seconds to rank every item for every user as evaluation does (dense scores, history masked, top k)
    against an exact faiss index asked for k + history items per user (then filtered)."""
    import faiss

    rng = np.random.default_rng(seed)
    users = rng.standard_normal((n_users, 64)).astype(np.float32)
    items = rng.standard_normal((n_items, 64)).astype(np.float32)
    seen = rng.integers(n_items, size=(n_users, history))
    started = time.perf_counter()
    scores = users @ items.T
    np.put_along_axis(scores, seen, -np.inf, axis=1)
    np.argpartition(-scores, k, axis=1)[:, :k]
    dense_s = time.perf_counter() - started
    started = time.perf_counter()
    index = faiss.IndexFlatIP(64)
    index.add(items)
    _, found = index.search(users, k + history)
    [row[~np.isin(row, mask)][:k] for row, mask in zip(found, seen, strict=True)]
    faiss_s = time.perf_counter() - started
    shape = f"{n_users} users x {n_items} items"
    return f"{shape}: dense {dense_s * 1000:.1f} ms, faiss flat {faiss_s * 1000:.1f} ms"


def main() -> None:
    """Build, measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--history", type=int, default=20)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--recall-users", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--index-file", type=Path, default=None, help="keep the built index here (reused)")
    parser.add_argument(
        "--ef-search", type=int, default=None, help="HNSW search width (default: the config's)"
    )
    parser.add_argument(
        "--evaluation", action="store_true", help="only compare full ranking, as evaluation does"
    )
    args = parser.parse_args()
    if args.evaluation:  # ML-100K and ML-latest-small shapes, a typical history length
        for users, items in ((943, 1682), (610, 9724)):
            print(full_ranking_comparison(users, items, history=100, seed=args.seed))
        return
    torch.set_num_threads(1)
    cfg = IndexConfig() if args.ef_search is None else IndexConfig(ef_search=args.ef_search)
    print(f"catalogue: {args.items} items x 64-d, {args.users} users; index config {cfg}", flush=True)
    bundle = synthetic_catalogue(args.items, args.users, args.history, args.seed)

    started = time.perf_counter()
    if args.index_file is not None and args.index_file.is_file():  # a kept build, to measure again
        bundle.item_index = read_index(args.index_file, cfg.n_candidates, cfg.retrieve_from)
        bundle.item_index.ef_search = cfg.ef_search
        print(f"index: {bundle.item_index.kind}, read from {args.index_file}", flush=True)
    else:
        bundle.item_index = build_index(bundle.item_vectors, cfg)
        print(f"index: {bundle.item_index.kind}, build {time.perf_counter() - started:.1f} s", flush=True)
        if args.index_file is not None:
            bundle.item_index.save(args.index_file)

    from explorec.serving.recommender import Recommender

    sample = np.random.default_rng(args.seed).choice(args.users, size=args.recall_users, replace=False)
    sample = sorted(int(row) for row in sample)
    queries = Recommender(bundle).user_vectors([bundle.history(row) for row in sample], sample)
    for ef_search in sorted({cfg.ef_search // 4, cfg.ef_search // 2, cfg.ef_search, 2 * cfg.ef_search}):
        index = replace(bundle.item_index, ef_search=ef_search)
        recall = recall_at_k(index, queries, bundle.item_vectors, k=10)
        print(f"recall@10 vs exact ({len(sample)} user vectors), efSearch {ef_search}: {recall:.4f}")

    with tempfile.TemporaryDirectory() as scratch:
        files = bundle.save(Path(scratch) / "bundle")
        del bundle
        for name in ("linucb", "epsilon_greedy"):
            rate = 1.0 if name == "linucb" else 0.1
            spec = PolicySpec(name, rate, {"n_candidates": 100} if name == "linucb" else {})
            _write_policy(files["model.json"], spec)
            started = time.perf_counter()
            model = ExplorecRecommender()
            artifacts = {file: str(path) for file, path in files.items()}
            context = mlflow.pyfunc.PythonModelContext(artifacts=artifacts, model_config={})
            model.load_context(context)
            load_s = time.perf_counter() - started
            latency = in_process_latency(_Predictor(model), requests(args.users, args.requests, args.seed))
            print(
                f"{name} (rate {rate}): model load {load_s:.1f} s; k=10 in-process p50 "
                f"{latency['p50_ms']:.2f} ms, p99 {latency['p99_ms']:.2f} ms, "
                f"mean {latency['mean_ms']:.2f} ms ({latency['requests']} requests)",
                flush=True,
            )
            del model


class _Predictor:
    """`model.predict(frame)` for a PythonModel (as a loaded pyfunc model offers it)."""

    def __init__(self, model: ExplorecRecommender) -> None:
        self.model = model

    def predict(self, frame: object) -> object:
        """Answer one DataFrame of requests."""
        return self.model.predict(None, frame)  # type: ignore[arg-type]


def _write_policy(model_json: Path, spec: PolicySpec) -> None:
    """Set the bundle's policy in its model.json."""
    import json
    from dataclasses import asdict

    model = json.loads(model_json.read_text())
    model["policy"] = asdict(spec)
    model_json.write_text(json.dumps(model, indent=2))


if __name__ == "__main__":
    main()
