"""Items added to a running service from their text only, against the offline cold-item figure.

Takes a training run of `explorec train data=ml_latest_small_tmdb split=cold_items` (its held-out items were
never in training; their vectors come from text alone). Packages it, removes the held-out items from the
served catalogue (as if it had been packaged before they existed), starts `explorec`'s service over HTTP on
127.0.0.1, adds the held-out items through `POST /items` (title, text and genres only), and checks:
- how long each `POST /items` takes and that the items are servable by the very next request;
- Recall@20 of the test interactions with held-out items, ranked among the held-out items
  (`test_cold_among_cold`), from the run's metrics, from the packaged vectors and from the served vectors.

    EXPLOREC_HOME=/path/to/home python benchmarks/new_items.py --run-id <training run>
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np

COLD_METRIC = "final/test_cold_among_cold/recall_at_20"
OVERRIDES = ["data=ml_latest_small_tmdb", "split=cold_items"]


class BundleScorer:
    """Scores users with a served recommender's user tower over fixed item vectors (catalogue order)."""

    def __init__(self, recommender, dataset, item_vectors: np.ndarray) -> None:
        self.recommender, self.dataset, self.item_vectors = recommender, dataset, item_vectors

    def score(self, users: np.ndarray, history_splits: Sequence[str]) -> np.ndarray:
        """Scores [len(users), n_items] from each user's history in `history_splits`."""
        sequences = self.dataset.sequences(*history_splits)
        scores = np.zeros((len(users), self.item_vectors.shape[0]), dtype=np.float32)
        with_history = [
            row for row, user in enumerate(users) if sequences.offsets[user + 1] > sequences.offsets[user]
        ]
        histories = [
            sequences.items[sequences.offsets[users[r]] : sequences.offsets[users[r] + 1]]
            for r in with_history
        ]
        if histories:
            vectors = self.recommender.user_vectors(histories, [int(users[r]) for r in with_history])
            scores[with_history] = vectors @ self.item_vectors.T
        return scores


def without_items(bundle, drop: np.ndarray):
    """The bundle with the items in `drop` removed from the catalogue and from every stored history."""
    keep = np.setdiff1d(np.arange(bundle.n_items), drop)
    new_index = np.full(bundle.n_items, -1, dtype=np.int64)
    new_index[keep] = np.arange(keep.size)
    offsets, items = [0], []
    for row in range(len(bundle.user_ids)):
        mapped = new_index[bundle.history(row)]
        items.extend(mapped[mapped >= 0].tolist())
        offsets.append(len(items))
    return replace(
        bundle,
        item_vectors=bundle.item_vectors[keep],
        item_ids=[bundle.item_ids[i] for i in keep],
        titles=[bundle.titles[i] for i in keep],
        item_popularity=bundle.item_popularity[keep],
        history_offsets=np.asarray(offsets, dtype=np.int64),
        history_items=np.asarray(items, dtype=np.int64),
        text_embeddings=None if bundle.text_embeddings is None else bundle.text_embeddings[keep],
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 free right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    """Package, serve without the held-out items, add them over HTTP, compare the cold-item recall."""
    import mlflow
    import uvicorn

    from explorec.data.loading import load_dataset
    from explorec.evaluation.targets import evaluate
    from explorec.models.fit import resolve_model_config
    from explorec.pipeline.config import load_config
    from explorec.policies.spec import PolicySpec
    from explorec.serving.impressions import ImpressionLog
    from explorec.serving.packaging import bundle_from_run
    from explorec.serving.recommender import Recommender
    from explorec.serving.service import FixedSource, RecommendationService, create_app
    from explorec.tracking.store import configure_tracking

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--batch", type=int, default=50, help="items per POST /items")
    args = parser.parse_args()
    cfg = load_config(OVERRIDES)
    target = configure_tracking(cfg.tracking)
    offline = mlflow.MlflowClient(target.tracking_uri).get_run(args.run_id).data.metrics[COLD_METRIC]
    dataset = load_dataset(cfg)
    model_cfg = resolve_model_config(cfg.model, cfg.split.name)
    bundle = bundle_from_run(
        args.run_id,
        dataset,
        model_cfg,
        PolicySpec.from_config(cfg.policy),
        tracking_uri=target.tracking_uri,
        encoder=cfg.encoder,
    )
    packaged = Recommender(bundle)
    packaged_recall = evaluate(BundleScorer(packaged, dataset, packaged.item_vectors), dataset)[
        "test_cold_among_cold"
    ]["recall@20"]

    items = dataset.items.sort_values("item_idx")
    cold = items.loc[items["is_cold"], "item_idx"].to_numpy()
    warm_bundle = without_items(bundle, cold)
    log = ImpressionLog(
        f"sqlite:///{Path(target.tracking_uri.removeprefix('sqlite:///')).parent / 'new_items.db'}"
    )
    service = RecommendationService(FixedSource(Recommender(warm_bundle)), log)
    service.warm_up()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    while not server.started:
        time.sleep(0.1)
    post_seconds, first_serve = [], None
    rows = items.loc[items["is_cold"]]
    with httpx.Client(timeout=120) as client:
        for start in range(0, len(rows), args.batch):
            chunk = rows.iloc[start : start + args.batch]
            body = {
                "items": [
                    {
                        "item_id": str(row.item_id),
                        "title": str(row.title),
                        "text": str(row.text),
                        "genres": [g for g in str(row.genres).split("|") if g and g != "nan"],
                    }
                    for row in chunk.itertuples()
                ]
            }
            begin = time.perf_counter()
            answer = client.post(f"{url}/items", json=body)
            post_seconds.append(time.perf_counter() - begin)
            assert answer.status_code == 200, answer.text
            if first_serve is None:
                begin = time.perf_counter()
                reply = client.post(
                    f"{url}/recommend", json={"recent_item_ids": [body["items"][0]["item_id"]], "k": 10}
                )
                first_serve = time.perf_counter() - begin
                assert reply.status_code == 200 and reply.json()["n_unknown_items"] == 0, reply.text
    server.should_exit = True
    thread.join(timeout=10)

    served = service.model().recommender
    served_vectors = np.stack([served.item_vectors[served.item_index[str(i)]] for i in items["item_id"]])
    difference = float(np.abs(served_vectors[cold] - packaged.item_vectors[cold]).max())
    served_recall = evaluate(BundleScorer(packaged, dataset, served_vectors), dataset)[
        "test_cold_among_cold"
    ]["recall@20"]
    result = {
        "held_out_items": int(cold.size),
        "post_items_seconds_per_batch": {
            "batch": args.batch,
            "median": float(np.median(post_seconds)),
            "max": float(np.max(post_seconds)),
        },
        "first_request_after_add_seconds": first_serve,
        "recall_at_20_among_cold": {
            "offline_run": offline,
            "packaged_vectors": packaged_recall,
            "served_after_post_items": served_recall,
        },
        "max_abs_vector_difference": difference,
    }
    print(
        f"{cold.size} held-out items added in {len(post_seconds)} POST /items of {args.batch}: median "
        f"{np.median(post_seconds):.2f} s, max {np.max(post_seconds):.2f} s; servable by the next request "
        f"({first_serve * 1000:.0f} ms)"
    )
    print(
        f"Recall@20 among held-out items: offline {offline:.4f}, packaged vectors {packaged_recall:.4f}, "
        f"served after POST /items {served_recall:.4f} (max |Δ vector| {difference:.2e})"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
