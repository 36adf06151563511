"""Load on `explorec serve` over HTTP: N concurrent clients for T seconds against a home's champion.

Starts the service as its own process on a free 127.0.0.1 port, lets it warm up, then runs N closed-loop
clients: each holds one keep-alive HTTP/1.1 connection and sends `POST /recommend` for a random known user
(k=10), the next request as soon as the previous answer was read. A latency is one HTTP round trip as the
client sees it: from sending the request to having read the whole answer, over TCP on 127.0.0.1, so it
includes the client's own time on the same machine. Prints requests, errors, the latency distribution, the
log rows against the slates answered, the server's resident memory sampled every few seconds (flat after
warm-up means no leak), the CPU the server and the client used per answer, and the load average.

Two clients: `--client async` (default; N asyncio tasks with aiohttp in this process, so the clients' own
CPU stays small beside the server's) and `--client threads` (N threads with one httpx session each; the
first version of this benchmark: on a two-core machine its threads take CPU the server would use).

    python benchmarks/service_load.py --home /path/to/home --clients 16 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far, all its threads (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


class Tally:
    """What the clients saw: latencies of every request, answers with 200, and the errors."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.answered = 0
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def add(self, elapsed: float, ok: bool, detail: str) -> None:
        """Record one request."""
        with self.lock:
            self.latencies.append(elapsed)
            self.answered += ok
            if not ok:
                self.errors.append(detail)


def body_for(rng: np.random.Generator, users: int) -> dict:
    """One request: a random known user, ten items."""
    return {"user_id": str(int(rng.integers(1, users + 1))), "k": 10}


def run_threads(url: str, clients: int, stop_at: float, users: int, tally: Tally) -> None:
    """N threads, each with one keep-alive httpx session, until `stop_at`."""

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(timeout=10) as session:
            while time.monotonic() < stop_at:
                body = body_for(rng, users)
                begin = time.perf_counter()
                try:
                    reply = session.post(f"{url}/recommend", json=body)
                    ok = reply.status_code == 200
                    detail = "" if ok else f"{reply.status_code} {reply.text[:200]}"
                except httpx.HTTPError as error:
                    ok, detail = False, repr(error)
                tally.add(time.perf_counter() - begin, ok, detail)

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))


def run_async(url: str, clients: int, stop_at: float, users: int, tally: Tally) -> None:
    """N asyncio tasks, each with its own aiohttp session (one keep-alive connection), until `stop_at`."""
    import aiohttp

    async def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        connector = aiohttp.TCPConnector(limit=1)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            while time.monotonic() < stop_at:
                body = body_for(rng, users)
                begin = time.perf_counter()
                try:
                    async with session.post(f"{url}/recommend", json=body) as reply:
                        text = await reply.read()
                        ok = reply.status == 200
                        detail = "" if ok else f"{reply.status} {text[:200]!r}"
                except (aiohttp.ClientError, TimeoutError) as error:
                    ok, detail = False, repr(error)
                tally.add(time.perf_counter() - begin, ok, detail)

    async def all_clients() -> None:
        await asyncio.gather(*(client(seed) for seed in range(clients)))

    asyncio.run(all_clients())


def main() -> None:
    """Run the load and print the measurements as a table and one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="EXPLOREC_HOME holding a champion")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--users", type=int, default=900, help="request user ids 1..users")
    parser.add_argument("--client", choices=("async", "threads"), default="async", help="load client")
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
        tally = Tally()
        load_before = os.getloadavg()
        server_cpu, client_cpu = cpu_seconds(server.pid), time.process_time()
        started = time.monotonic()
        stop_at = started + args.seconds

        def sample() -> None:
            while time.monotonic() < stop_at:
                memory.append((time.monotonic() - started, rss_mib(server.pid)))
                time.sleep(5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        runner = run_async if args.client == "async" else run_threads
        runner(url, args.clients, stop_at, args.users, tally)
        sampler.join()
        wall = time.monotonic() - started
        server_cpu = cpu_seconds(server.pid) - server_cpu
        client_cpu = time.process_time() - client_cpu
        load_after = os.getloadavg()
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
    values = np.asarray(tally.latencies) * 1000
    requests = len(tally.latencies)
    result = {
        "model": health["model"],
        "client": args.client,
        "clients": args.clients,
        "seconds": round(wall, 1),
        "requests": requests,
        "errors": len(tally.errors),
        "requests_per_s": round(requests / wall, 1),
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p90_ms": round(float(np.percentile(values, 90)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
        "max_ms": round(float(values.max()), 2),
        "answered_by_clients": tally.answered,
        "answered_by_server_incl_warmup": served_in_run,
        "log_impressions": rows["impressions"],
        "log_slots": rows["slots"],
        "rss_mib": [round(value, 1) for _, value in memory],
        "server_cpu_ms_per_request": round(server_cpu / max(requests, 1) * 1000, 3),
        "client_cpu_ms_per_request": round(client_cpu / max(requests, 1) * 1000, 3),
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in load_after],
        "cpus": os.cpu_count(),
        "n_items": before["n_items"],
    }
    print(
        f"{args.clients} {args.client} clients × {wall:.0f} s on {url}: {requests} requests, "
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
    print(
        f"CPU per request: server {result['server_cpu_ms_per_request']} ms, client "
        f"{result['client_cpu_ms_per_request']} ms; load average {result['load_average_before']} before, "
        f"{result['load_average_after']} after ({result['cpus']} CPUs)"
    )
    if tally.errors:
        print("first errors:", tally.errors[:3])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
