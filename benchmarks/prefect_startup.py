"""Seconds of a small flow command (`explorec preprocess --force-flow`, tiny data), N times on one home.

The first run meets a fresh home (the Prefect database is created), the next ones a warm one; the last line
is a command that needs no flow run (`preprocess` answering from its cache), the floor of the command's own
imports and work. With --with-up the runs happen while `explorec up --no-serve --detach` serves the home
(free ports), so the command needs no Prefect server of its own.

    python benchmarks/prefect_startup.py --runs 3 [--with-up]
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
from pathlib import Path

TINY_DATA = [
    "data=synthetic",
    "data.synthetic.n_users=60",
    "data.synthetic.n_items=40",
    "data.synthetic.n_interactions=1000",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def timed(command: list[str], env: dict[str, str], home: Path) -> float:
    """Run `command` on `home`; return its wall seconds (fails loudly when it fails)."""
    started = time.monotonic()
    done = subprocess.run(command, env=env, cwd=home, capture_output=True, text=True, timeout=900)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    """Time the runs and print one line each, then a JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--with-up", action="store_true", help="run while `explorec up` serves the home")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="explorec-startup-"))
    prefect_port, mlflow_port = free_port(), free_port()
    env = {
        **os.environ,
        "EXPLOREC_HOME": str(home),
        "EXPLOREC_PREFECT_PORT": str(prefect_port),
        "EXPLOREC_MLFLOW_PORT": str(mlflow_port),
    }
    cli = [sys.executable, "-m", "explorec.cli"]
    if args.with_up:
        up = [*cli, "up", "--no-serve", "--detach"]
        up += ["--prefect-port", str(prefect_port), "--mlflow-port", str(mlflow_port)]
        print(f"explorec up: {timed(up, env, home):.1f} s", flush=True)
    seconds: list[float] = []
    try:
        for index in range(args.runs):
            seconds.append(timed([*cli, "preprocess", "--force-flow", *TINY_DATA], env, home))
            print(f"run {index + 1} (flow): {seconds[-1]:.1f} s", flush=True)
        floor = timed([*cli, "preprocess", *TINY_DATA], env, home)
        print(f"no flow (cache hit): {floor:.1f} s", flush=True)
    finally:
        if args.with_up:
            subprocess.run([*cli, "down"], env=env, cwd=home, capture_output=True, timeout=120)
    flow_runs = [round(second, 1) for second in seconds]
    summary = {"with_up": args.with_up, "flow_runs_s": flow_runs, "no_flow_s": round(floor, 1)}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
