"""Optuna on a real PostgreSQL server: two `explorec tune` workers, one killed with SIGKILL mid-trial.

PostgreSQL comes from Debian's package (the session fixture `postgres_url` in tests/conftest.py starts it
on a free 127.0.0.1 port). The study's workers share it as they would from several machines.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from explorec.config import compose
from explorec.tuning.study import WORKER_ATTR, budget_of, open_storage, open_study

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

TINY = [
    "data=synthetic",
    "data.synthetic.n_users=60",
    "data.synthetic.n_items=40",
    "data.synthetic.n_interactions=1000",
    "encoder=none",
    "model.history_length=10",
    "trainer.batch_size=128",
    "trainer.enable_progress_bar=false",
    "trainer.max_epochs=3",  # a trial lasts a few seconds: long enough to be killed in the middle
    "tune.diversity_objective=coverage",
    "tune.search_space.model.embedding_dim.choices=[8,16]",
    "tune.n_trials=4",
    "tune.n_workers=2",
]


def tune_command(overrides: list[str]) -> list[str]:
    """The `explorec tune ... --json` command line, run with this interpreter."""
    return [sys.executable, "-m", "explorec.cli", "tune", *overrides, "--json"]


def running_trial_of_a_worker(study: Any) -> optuna.trial.FrozenTrial | None:
    """A RUNNING trial that a worker has marked and opened its MLflow run for (mid-trial), or None."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        mark = trial.user_attrs.get(WORKER_ATTR)
        if (
            isinstance(mark, dict)
            and mark.get("trial") == trial.number
            and "mlflow_run_id" in trial.user_attrs
        ):
            return trial
    return None


def kill_a_worker_mid_trial(
    process: subprocess.Popen[str], study: Any, timeout: float
) -> optuna.trial.FrozenTrial:
    """Wait until a worker is inside a trial, SIGKILL that worker process; return the trial it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the study ended before any worker was seen mid-trial"
        trial = running_trial_of_a_worker(study)
        if trial is not None:
            os.kill(int(trial.user_attrs[WORKER_ATTR]["pid"]), signal.SIGKILL)
            return trial
        time.sleep(0.1)
    raise AssertionError(f"no worker was mid-trial within {timeout:.0f} s")


@pytest.mark.slow
def test_a_worker_killed_mid_trial_leaves_nothing_running_after_the_rerun(
    postgres_url: str, isolated_home: Path
) -> None:
    overrides = [*TINY, f"tune.storage={postgres_url}", "tune.study_name=killed-worker"]
    # the same-host pid check recovers the trial here; a long grace keeps the heartbeat path (tested below)
    # from racing it on a slow machine
    overrides.append("tune.grace_period_s=600")
    tune = compose(overrides).tune
    study = open_study(tune, open_storage(tune), max_epochs=3)
    first = subprocess.Popen(
        tune_command(overrides), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        killed = kill_a_worker_mid_trial(first, study, timeout=300)
        output = first.communicate(timeout=300)[0]
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode != 0, output  # a worker died: the command says so instead of claiming success
    assert "was killed by SIGKILL" in output, output
    after_kill = budget_of(study, tune.n_trials)
    assert (after_kill.running, after_kill.waiting) == (0, 1)  # failed at once, its retry queued
    tracking_uri = f"sqlite:///{isolated_home / 'mlruns' / 'mlflow.db'}"
    orphan = MlflowClient(tracking_uri).get_run(killed.user_attrs["mlflow_run_id"])
    assert orphan.info.status == "FAILED"  # the killed trial's MLflow run does not stay RUNNING

    rerun = subprocess.run(tune_command(overrides), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr

    budget = budget_of(study, tune.n_trials)
    assert (budget.complete, budget.running, budget.waiting) == (tune.n_trials, 0, 0)
    trials = study.get_trials()
    assert trials[killed.number].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == killed.params
    assert len({t.user_attrs[WORKER_ATTR]["pid"] for t in trials}) >= 2  # both workers of the first run ran


HANGING_WORKER = textwrap.dedent(
    """
    import sys, time
    from explorec.config.tuning import TuneConfig
    from explorec.tuning.study import open_storage, open_study, run_until_budget

    def objective(trial):
        trial.suggest_float("x", 0.0, 1.0)
        time.sleep(600)  # stays mid-trial until it is killed

    tune = TuneConfig(
        storage=sys.argv[1], study_name="heartbeat", n_trials=2, heartbeat_interval_s=1, grace_period_s=2
    )
    run_until_budget(open_study(tune, open_storage(tune), max_epochs=1), objective, tune.n_trials)
    """
)


def quadratic(trial: optuna.Trial) -> tuple[float, float]:
    """A cheap two-objective stand-in for training."""
    x = trial.suggest_float("x", 0.0, 1.0)
    return x, 1.0 - x * x


def test_a_dead_workers_trial_is_retried_by_another_worker_through_heartbeats(postgres_url: str) -> None:
    """The check that spans machines: no pid is consulted, only the heartbeat PostgreSQL stores."""
    from explorec.config.tuning import TuneConfig
    from explorec.tuning.study import run_until_budget

    tune = TuneConfig(
        storage=postgres_url, study_name="heartbeat", n_trials=2, heartbeat_interval_s=1, grace_period_s=2
    )
    study = open_study(tune, open_storage(tune), max_epochs=1)
    worker = subprocess.Popen([sys.executable, "-c", HANGING_WORKER, postgres_url])
    try:
        deadline = time.monotonic() + 120
        while not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            assert worker.poll() is None and time.monotonic() < deadline, "the worker never started a trial"
            time.sleep(0.1)
        time.sleep(1.5)  # let it record a heartbeat or two
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    [stale] = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    time.sleep(tune.grace_period_s + 1)  # its heartbeat is now older than the grace period

    assert run_until_budget(study, quadratic, tune.n_trials) == 2  # a live worker on the same study
    trials = study.get_trials()
    assert trials[stale.number].state == TrialState.FAIL
    [retry] = [t for t in trials if t.system_attrs.get("failed_trial") == stale.number]
    assert retry.state == TrialState.COMPLETE and retry.params == stale.params
    budget = budget_of(study, tune.n_trials)
    assert (budget.complete, budget.running, budget.waiting) == (2, 0, 0)
