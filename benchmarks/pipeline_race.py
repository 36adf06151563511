"""Two `explorec pipeline` started together on a fresh home, N rounds: exit codes, times, and the store after.

Each round makes a new home, starts two pipelines at the same moment on it (the smallest data and model
that train, package, register and gate; `pipeline.simulate=false` unless --simulate), waits for both, then
checks that the store still answers (`explorec promote --dry-run` exits 0, no run left RUNNING).

    python benchmarks/pipeline_race.py --rounds 10
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TINY = [
    "data=synthetic",
    "data.synthetic.n_users=60",
    "data.synthetic.n_items=40",
    "data.synthetic.n_interactions=1000",
    "encoder=none",
    "model.history_length=10",
    "trainer.batch_size=128",
    "trainer.enable_progress_bar=false",
    "trainer.max_epochs=1",
]


def running_runs(home: Path) -> int:
    """MLflow runs still RUNNING in the home's store."""
    with sqlite3.connect(home / "mlruns" / "mlflow.db") as db:
        return int(db.execute("SELECT COUNT(*) FROM runs WHERE status = 'RUNNING'").fetchone()[0])


def one_round(simulate: bool) -> dict:
    """Race two pipelines on a fresh home; return exit codes, seconds and the store's state."""
    home = Path(tempfile.mkdtemp(prefix="explorec-race-"))
    env = {**os.environ, "EXPLOREC_HOME": str(home)}
    command = [sys.executable, "-m", "explorec.cli", "pipeline", *TINY]
    if not simulate:
        command.append("pipeline.simulate=false")
    started = time.monotonic()
    runs = [
        subprocess.Popen(
            command, env=env, cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    errors = [run.communicate(timeout=1800)[1] for run in runs]
    seconds = round(time.monotonic() - started, 1)
    after = subprocess.run(
        [sys.executable, "-m", "explorec.cli", "promote", "--dry-run"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return {
        "home": str(home),
        "exit_codes": [run.returncode for run in runs],
        "seconds": seconds,
        "store_usable": after.returncode == 0,
        "running_runs": running_runs(home),
        "errors": [
            error.strip().splitlines()[-1] for error, run in zip(errors, runs, strict=True) if run.returncode
        ],
    }


def main() -> None:
    """Run the rounds and print one line each, then a JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--simulate", action="store_true", help="keep the pipeline's simulation step")
    args = parser.parse_args()
    results = []
    for index in range(args.rounds):
        result = one_round(args.simulate)
        results.append(result)
        print(
            f"round {index + 1}: exit {result['exit_codes']}, {result['seconds']} s, store usable "
            f"{result['store_usable']}, RUNNING runs {result['running_runs']} {result['errors'] or ''}",
            flush=True,
        )
    ok = sum(r["exit_codes"] == [0, 0] and r["store_usable"] and r["running_runs"] == 0 for r in results)
    print(json.dumps({"rounds": args.rounds, "all_clean": ok, "results": results}))


if __name__ == "__main__":
    main()
