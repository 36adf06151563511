"""Load on `explorec serve` over HTTP: N concurrent clients for T seconds against a home's champion.

Starts the service as its own process on a free 127.0.0.1 port, lets it warm up, then runs the clients
(each a keep-alive HTTP session sending random known users, with exploration, one slate each). Prints
requests, errors, the latency distribution seen by the clients, the log rows against the slates answered,
and the server's resident memory sampled every few seconds (flat after warm-up means no leak).

    python benchmarks/service_load.py --home /path/to/home --clients 16 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np


def free_port() -> int:
    """A TCP port on 127.0.0.1 free right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(home: Path, port: int) -> subprocess.Popen[bytes]:
    """Start `explorec serve` for `home` on `port`."""
    env = {**os.environ, "EXPLOREC_HOME": str(home)}
    command = [sys.executable, "-m", "explorec.cli", "serve", f"service.port={port}"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 300.0) -> dict:
    """The /health answer once the service is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"service exited: {process.stderr.read().decode()[-2000:]}")
        try:
            return httpx.get(f"{url}/health", timeout=2).json()
        except httpx.HTTPError:
            time.sleep(0.5)
    raise SystemExit("service did not start")


def main() -> None:
    """Run the load and print the measurements as a table and one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="EXPLOREC_HOME holding a champion")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--users", type=int, default=900, help="request user ids 1..users")
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start(args.home, port)
    try:
        health = wait_healthy(url, server)
        before = httpx.get(f"{url}/health").json()
        with httpx.Client() as warm:
            until = time.monotonic() + args.warmup
            while time.monotonic() < until:
                warm.post(f"{url}/recommend", json={"user_id": "1", "k": 10})
        memory: list[tuple[float, float]] = []
        latencies: list[float] = []
        errors: list[str] = []
        answered = 0
        lock = threading.Lock()
        started = time.monotonic()
        stop_at = started + args.seconds

        def client(seed: int) -> None:
            nonlocal answered
            rng = np.random.default_rng(seed)
            with httpx.Client(timeout=10) as session:
                while time.monotonic() < stop_at:
                    body = {"user_id": str(int(rng.integers(1, args.users + 1))), "k": 10}
                    begin = time.perf_counter()
                    try:
                        reply = session.post(f"{url}/recommend", json=body)
                        ok = reply.status_code == 200
                        detail = "" if ok else f"{reply.status_code} {reply.text[:200]}"
                    except httpx.HTTPError as error:
                        ok, detail = False, repr(error)
                    elapsed = time.perf_counter() - begin
                    with lock:
                        latencies.append(elapsed)
                        answered += ok
                        if not ok:
                            errors.append(detail)

        def sample() -> None:
            while time.monotonic() < stop_at:
                memory.append((time.monotonic() - started, rss_mib(server.pid)))
                time.sleep(5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(client, range(args.clients)))
        sampler.join()
        wall = time.monotonic() - started
        metrics = httpx.get(f"{url}/metrics").text
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    from explorec.serving.impressions import ImpressionLog

    log = ImpressionLog(f"sqlite:///{args.home / 'mlruns' / 'impressions.db'}")
    rows = log.counts()
    log.close()
    served_in_run = sum(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith('explorec_requests_total{endpoint="/recommend",status="200"}')
    )
    values = np.asarray(latencies) * 1000
    result = {
        "model": health["model"],
        "clients": args.clients,
        "seconds": round(wall, 1),
        "requests": len(latencies),
        "errors": len(errors),
        "requests_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p90_ms": round(float(np.percentile(values, 90)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
        "max_ms": round(float(values.max()), 2),
        "answered_by_clients": answered,
        "answered_by_server_incl_warmup": served_in_run,
        "log_impressions": rows["impressions"],
        "log_slots": rows["slots"],
        "rss_mib": [round(value, 1) for _, value in memory],
        "n_items": before["n_items"],
    }
    print(
        f"{args.clients} clients × {wall:.0f} s on {url}: {result['requests']} requests, "
        f"{result['errors']} errors, {result['requests_per_s']}/s"
    )
    print(
        f"latency ms: p50 {result['p50_ms']}  p90 {result['p90_ms']}  p99 {result['p99_ms']}  "
        f"max {result['max_ms']}"
    )
    print(
        f"impression log: {rows['impressions']} slates ({rows['slots']} slots); server answered "
        f"{served_in_run:.0f} slates with 200 (warm-up included)"
    )
    print(f"server RSS MiB every 5 s: {result['rss_mib']}")
    if errors:
        print("first errors:", errors[:3])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
