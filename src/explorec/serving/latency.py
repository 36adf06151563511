"""Serving latency of the pyfunc recommender: in-process `predict` and over HTTP with `mlflow models serve`.

The catalogue is ML-100K-sized (943 users, 1,682 items, 100,000 interactions, popularity-skewed, seeded) with
untrained default-shaped towers (embedding_dim 64, history_length 50): latency depends on shapes, not
weights. Requests ask for k = 10 with exploration (ε-greedy, rate 0.1, a seed per request): 80% known users,
10% recent items (one unknown id among them), 10% new users (cold start). One request per call, in sequence.

    python -m explorec.serving.latency --requests 1000 [--http]
    python -m explorec.serving.latency --model-uri models:/explorec-two-tower@champion \
        --tracking-uri sqlite:///mlruns/mlflow.db --http        # a trained, registered model instead
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from explorec.policies.spec import PolicySpec
from explorec.serving.bundle import RecommenderBundle, tower_config
from explorec.serving.packaging import bundle_from_parts

ML100K_SHAPE = {"n_users": 943, "n_items": 1682, "n_interactions": 100_000}


def synthetic_dataset(*, n_users: int, n_items: int, n_interactions: int, seed: int = 0) -> Any:
    """Return an in-memory ProcessedDataset of the given size (Zipf-like popularity, all in train)."""
    from explorec.data.processed import ProcessedDataset

    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    users = rng.integers(0, n_users, size=n_interactions)
    items = rng.choice(n_items, size=n_interactions, p=popularity / popularity.sum())
    frame = pd.DataFrame(
        {"user_idx": users, "item_idx": items, "rating": 4.0, "timestamp": np.arange(n_interactions)}
    )
    frame = frame.drop_duplicates(["user_idx", "item_idx"]).reset_index(drop=True)
    catalogue = pd.DataFrame(
        {"item_idx": np.arange(n_items), "item_id": [str(i + 1) for i in range(n_items)], "title": "movie"}
    )
    people = pd.DataFrame({"user_idx": np.arange(n_users), "user_id": [str(u + 1) for u in range(n_users)]})
    empty = frame.iloc[:0]
    return ProcessedDataset(
        Path("synthetic"), frame, empty, empty, catalogue, people, {"fingerprint": "bench"}
    )


def synthetic_bundle(policy: PolicySpec | None = None, seed: int = 0) -> RecommenderBundle:
    """Return an ML-100K-sized bundle with untrained default-shaped towers."""
    import torch

    from explorec.config import ModelConfig
    from explorec.models.towers import UserTower

    dataset = synthetic_dataset(**ML100K_SHAPE, seed=seed)
    torch.manual_seed(seed)
    model_cfg = ModelConfig()
    tower = tower_config(model_cfg, dataset.n_users)
    user_tower = UserTower(**{key: value for key, value in tower.items() if key != "n_users"})
    vectors = np.random.default_rng(seed).normal(size=(dataset.n_items, model_cfg.embedding_dim))
    return bundle_from_parts(
        dataset=dataset,
        item_vectors=(vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32),
        user_tower_state=user_tower.state_dict(),
        tower=tower,
        policy=policy or PolicySpec("epsilon_greedy", 0.1),
    )


def benchmark_requests(bundle: RecommenderBundle, count: int, *, k: int = 10, seed: int = 0) -> list[dict]:
    """Return `count` single requests: 80% known users, 10% recent items, 10% new users; all exploring."""
    rng = np.random.default_rng(seed)
    requests = []
    for index in range(count):
        kind = rng.random()
        request: dict[str, Any] = {"k": k, "exploration_rate": 0.1, "seed": index}
        if kind < 0.8:
            request["user_id"] = bundle.user_ids[int(rng.integers(len(bundle.user_ids)))]
        elif kind < 0.9:
            picks = rng.choice(len(bundle.item_ids), size=5, replace=False)
            request["recent_item_ids"] = [bundle.item_ids[int(i)] for i in picks] + ["no-such-item"]
        else:
            request["user_id"] = f"new-{index}"
        requests.append(request)
    return requests


def summarise(durations_s: Sequence[float], wall_s: float, cpu_s: float | None = None) -> dict[str, float]:
    """Return p50/p99/mean latency in ms, requests per second and (in-process) CPU ms per request."""
    values = np.asarray(durations_s) * 1000.0
    extra = {} if cpu_s is None else {"cpu_ms_per_request": cpu_s * 1000.0 / len(values)}
    return extra | {
        "requests": len(values),
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
        "mean_ms": float(values.mean()),
        "requests_per_s": len(values) / wall_s,
    }


def in_process_latency(model: Any, requests: Sequence[dict], warmup: int = 20) -> dict[str, float]:
    """Time `model.predict` on one-row DataFrames, one request per call."""
    frames = [pd.DataFrame([request]) for request in requests]
    for frame in frames[:warmup]:
        model.predict(frame)
    durations = []
    started, cpu_started = time.perf_counter(), time.process_time()
    for frame in frames:
        begin = time.perf_counter()
        model.predict(frame)
        durations.append(time.perf_counter() - begin)
    return summarise(durations, time.perf_counter() - started, time.process_time() - cpu_started)


def http_latency(url: str, requests: Sequence[dict], warmup: int = 20) -> dict[str, float]:
    """Time POSTs of one request each to a scoring server's /invocations (keep-alive connection)."""
    import httpx

    bodies = [json.dumps({"dataframe_records": [request]}) for request in requests]
    headers = {"Content-Type": "application/json"}
    with httpx.Client(timeout=30.0) as client:
        for body in bodies[:warmup]:
            client.post(url, content=body, headers=headers).raise_for_status()
        durations = []
        started = time.perf_counter()
        for body in bodies:
            begin = time.perf_counter()
            client.post(url, content=body, headers=headers).raise_for_status()
            durations.append(time.perf_counter() - begin)
    return summarise(durations, time.perf_counter() - started)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_model_server(model_uri: str, port: int, *, tracking_uri: str | None = None) -> subprocess.Popen:
    """Start `mlflow models serve` (env manager local) for `model_uri` on 127.0.0.1:`port`."""
    # the scoring server execs `uvicorn` by name: put this interpreter's bin folder first on PATH
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local"]
    return subprocess.Popen(
        [*command, "-h", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def wait_until_ready(server: subprocess.Popen, port: int, timeout_s: float = 300.0) -> None:
    """Wait until the server answers /ping, or raise with its stderr when it exits or times out."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(
                f"model server exited: {server.stderr.read()[-3000:] if server.stderr else ''}"
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"model server on port {port} not ready within {timeout_s:g} s")


def stop_model_server(server: subprocess.Popen) -> None:
    """Stop the server's process group and wait for it."""
    import signal

    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)


def run_benchmark(count: int, *, http: bool) -> dict[str, Any]:
    """Log the synthetic bundle to a temporary store, load it, and time in-process (and HTTP) requests."""
    import mlflow

    from explorec.serving.pyfunc import log_recommender

    bundle = synthetic_bundle()
    results: dict[str, Any] = {"catalogue": ML100K_SHAPE, "k": 10, "policy": "epsilon_greedy@0.1"}
    with tempfile.TemporaryDirectory() as scratch:
        uri = f"sqlite:///{Path(scratch) / 'mlflow.db'}"
        mlflow.set_tracking_uri(uri)
        began = time.perf_counter()
        with mlflow.start_run():
            info = log_recommender(bundle)
        results["log_model_s"] = time.perf_counter() - began
        return results | time_model(info.model_uri, count, http=http, tracking_uri=uri)


def time_model(model_uri: str, count: int, *, http: bool, tracking_uri: str | None = None) -> dict[str, Any]:
    """Load a logged or registered recommender (e.g. `models:/<name>@champion`) and time its requests."""
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    began = time.perf_counter()
    model = mlflow.pyfunc.load_model(model_uri)
    bundle = model.unwrap_python_model().recommender.bundle
    results: dict[str, Any] = {
        "model_uri": model_uri,
        "load_s": time.perf_counter() - began,
        "catalogue": {"n_users": len(bundle.user_ids), "n_items": len(bundle.item_ids)},
        "policy": f"{bundle.policy.name}@{bundle.policy.exploration_rate:g}",
    }
    requests = benchmark_requests(bundle, count)
    results["in_process"] = in_process_latency(model, requests)
    if http:
        port = free_port()
        server = start_model_server(model_uri, port, tracking_uri=tracking_uri)
        try:
            wait_until_ready(server, port)
            results["http"] = http_latency(f"http://127.0.0.1:{port}/invocations", requests)
        finally:
            stop_model_server(server)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    """Print the latency benchmark as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--http", action="store_true", help="also time `mlflow models serve` over HTTP")
    parser.add_argument(
        "--model-uri",
        help="time this model (e.g. models:/explorec-two-tower@champion) instead of a synthetic one",
    )
    parser.add_argument("--tracking-uri", help="tracking store that resolves --model-uri (default: MLflow's)")
    args = parser.parse_args(argv)
    if args.model_uri:
        results = time_model(args.model_uri, args.requests, http=args.http, tracking_uri=args.tracking_uri)
    else:
        results = run_benchmark(args.requests, http=args.http)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
