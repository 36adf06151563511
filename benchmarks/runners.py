"""The local task runner against Prefect's Dask task runner, side by side on the same command and config.

For each command (`simulate`, `study`) the caches are filled first, untimed and in this process (processed
data, item-text embeddings, the simulator's two-tower fits), so that both timed runs start from the same
state; then `explorec <command> runner=local` and `explorec <command> runner=dask runner.n_workers=N` run as
child processes, one after the other (alternating with --repeats), each timed from start to exit. Prints
each run's wall time with the 1-minute load average before and after it (`os.getloadavg`, as `uptime`
shows it), the ratio dask / local, and whether the run's tables (the CSV artifacts of its MLflow run,
without the wall-time column `seconds`) are identical. Uses EXPLOREC_HOME (default: a new temporary folder).

    nice -n 5 python benchmarks/runners.py [--commands simulate study] [--workers 2] [--repeats 1] \
        [--set simulate.n_replications=3 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

TABLES = {
    "simulate": ("summary", "comparisons", "per_replication", "ope"),
    "study": ("summary", "per_replication", "comparisons", "equal_cost", "matched_rate"),
}
TIMINGS = ("seconds",)


def warm_caches(command: str, overrides: list[str]) -> float:
    """Fill the caches the command reads (preprocess, encode, the simulator's fits); return seconds."""
    from explorec.pipeline.config import load_config
    from explorec.simulation.tracked import prepare_simulation, prepare_study
    from flows.study import encoder_overrides

    started = time.perf_counter()
    cfg = load_config(overrides)
    if command == "simulate":
        prepare_simulation(cfg)
    else:
        configs = {e: load_config(encoder_overrides(overrides, e)) for e in cfg.study.encoders}
        prepare_study(configs)
    return time.perf_counter() - started


def timed_run(command: str, overrides: list[str]) -> dict[str, Any]:
    """Run `explorec <command> --json <overrides>` as a child process; its summary, wall time and loads."""
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "explorec.cli", command, "--json", *overrides],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"explorec {command} {' '.join(overrides)} failed:\n{done.stderr[-3000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return {"seconds": seconds, "load_before": load_before, "load_after": os.getloadavg()[0], **summary}


def run_tables(summary: dict[str, Any], names: tuple[str, ...], folder: Path) -> dict[str, pd.DataFrame]:
    """The run's CSV tables without the wall-time columns."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(summary["tracking_uri"])
    folder.mkdir(parents=True, exist_ok=True)
    tables = {}
    for name in names:
        frame = pd.read_csv(client.download_artifacts(summary["run_id"], f"{name}.csv", str(folder)))
        tables[name] = frame.drop(columns=[c for c in TIMINGS if c in frame.columns])
    return tables


def identical(left: dict[str, pd.DataFrame], right: dict[str, pd.DataFrame]) -> list[str]:
    """Names of the tables that differ (empty: all identical, exactly)."""
    different = []
    for name, frame in left.items():
        try:
            pd.testing.assert_frame_equal(frame, right[name], check_exact=True)
        except AssertionError:
            different.append(name)
    return different


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", nargs="+", default=["simulate", "study"], choices=sorted(TABLES))
    parser.add_argument("--workers", type=int, default=2, help="runner.n_workers of the Dask LocalCluster")
    parser.add_argument("--repeats", type=int, default=1, help="pairs per command (order alternates)")
    parser.add_argument("--set", nargs="*", default=[], help="Hydra overrides for both runners")
    args = parser.parse_args()
    os.environ.setdefault("EXPLOREC_HOME", tempfile.mkdtemp(prefix="explorec-runners-"))
    print(f"EXPLOREC_HOME={os.environ['EXPLOREC_HOME']} cores={os.cpu_count()} overrides={args.set}")
    runners = {"local": ["runner=local"], "dask": ["runner=dask", f"runner.n_workers={args.workers}"]}
    for command in args.commands:
        print(f"\n{command}: caches filled in {warm_caches(command, args.set):.1f} s (untimed)")
        for repeat in range(args.repeats):
            order = list(runners) if repeat % 2 == 0 else list(reversed(runners))
            runs = {}
            for name in order:
                runs[name] = timed_run(command, [*args.set, *runners[name]])
                run = runs[name]
                print(
                    f"  {command} runner={name}: {run['seconds']:.1f} s "
                    f"(load average {run['load_before']:.1f} before, {run['load_after']:.1f} after)"
                )
            scratch = Path(tempfile.mkdtemp(prefix="runner-tables-"))
            tables = {name: run_tables(run, TABLES[command], scratch / name) for name, run in runs.items()}
            differ = identical(tables["local"], tables["dask"])
            ratio = runs["dask"]["seconds"] / runs["local"]["seconds"]
            verdict = "identical" if not differ else f"DIFFERENT: {', '.join(differ)}"
            print(f"  {command}: dask / local = {ratio:.2f}; tables {verdict}")


if __name__ == "__main__":
    main()
