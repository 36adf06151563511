"""Storage, resumable budget and stale-trial recovery, with a cheap objective (no training)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from explorec.config.tuning import PrunerConfig, TuneConfig
from explorec.tuning.study import (
    WORKER_ATTR,
    budget_of,
    build_pruner,
    open_storage,
    open_study,
    recover_stale_trials,
    resolve_storage_url,
    run_until_budget,
    storage_label,
)


def quadratic(trial: optuna.Trial) -> tuple[float, float]:
    """A cheap two-objective stand-in for training."""
    x = trial.suggest_float("x", 0.0, 1.0)
    return x, 1.0 - x * x


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def journal_tune(tmp_path: Path, **changes: object) -> TuneConfig:
    """A small multi-objective study on a journal file in tmp_path."""
    return TuneConfig(storage=f"journal:{tmp_path / 'optuna.log'}", study_name="unit", **changes)  # type: ignore[arg-type]


def test_relative_storage_paths_resolve_under_the_project_root(isolated_home: Path) -> None:
    assert resolve_storage_url("sqlite:///mlruns/optuna.db") == f"sqlite:///{isolated_home}/mlruns/optuna.db"
    assert resolve_storage_url("journal:mlruns/optuna.log") == f"journal:{isolated_home}/mlruns/optuna.log"
    assert resolve_storage_url("journal:///tmp/x.log") == "journal:/tmp/x.log"
    assert resolve_storage_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"  # the pinned driver
    assert resolve_storage_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"


def test_a_server_storage_is_labelled_without_its_password() -> None:
    label = storage_label("postgresql+psycopg://tuner:s3cret@db.example:5432/optuna")
    assert "s3cret" not in label and label.startswith("postgresql+psycopg://tuner:***@db.example:5432")
    assert storage_label("journal:/tmp/x.log") == "journal:/tmp/x.log"


def test_a_failed_workers_message_names_the_signal_that_killed_it() -> None:
    from explorec.tuning.workers import workers_failed_message

    message = workers_failed_message([0, -9, 1])
    assert "worker 1 was killed by SIGKILL" in message and "worker 2 exited 1" in message
    assert "worker 0" not in message and "rerun the same command" in message


def test_a_rerun_completes_only_the_remaining_budget(tmp_path: Path) -> None:
    tune = journal_tune(tmp_path, n_trials=4)
    study = open_study(tune, open_storage(tune), max_epochs=1)
    assert run_until_budget(study, quadratic, 2) == 2  # "interrupted" after 2 of 4
    resumed = open_study(tune, open_storage(tune), max_epochs=1)
    assert run_until_budget(resumed, quadratic, tune.n_trials) == 2
    assert budget_of(resumed, tune.n_trials).complete == 4


def test_a_killed_workers_running_trial_is_failed_and_retried(tmp_path: Path) -> None:
    tune = journal_tune(tmp_path, n_trials=3)
    storage = open_storage(tune)
    study = open_study(tune, storage, max_epochs=1)
    stale = study.ask()
    stale.suggest_float("x", 0.0, 1.0)
    stale.set_user_attr(WORKER_ATTR, {"host": socket.gethostname(), "pid": dead_pid(), "trial": stale.number})
    alive = study.ask()  # a live worker (this process) must keep its trial
    alive.set_user_attr(
        WORKER_ATTR, {"host": socket.gethostname(), "pid": os.getpid(), "trial": alive.number}
    )

    assert recover_stale_trials(study, storage, tune) == [stale.number]
    states = {t.number: t.state for t in study.get_trials()}
    assert states[stale.number] == TrialState.FAIL
    assert states[alive.number] == TrialState.RUNNING
    retry = [t for t in study.get_trials() if t.state == TrialState.WAITING]
    assert len(retry) == 1 and retry[0].params == study.trials[stale.number].params

    study.tell(alive, (0.5, 0.5))
    run_until_budget(study, quadratic, tune.n_trials)
    budget = budget_of(study, tune.n_trials)
    assert (budget.complete, budget.running, budget.waiting) == (3, 0, 0)


def test_rdb_storage_has_heartbeat_and_retry(tmp_path: Path) -> None:
    tune = TuneConfig(
        storage=f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_interval_s=5, grace_period_s=12
    )
    storage = open_storage(tune)
    assert storage.get_heartbeat_interval() == 5
    assert storage.get_heartbeat_stale_trial_callback() is not None


def test_a_study_with_other_objectives_is_not_silently_reused(tmp_path: Path) -> None:
    from explorec.errors import ConfigError

    tune = journal_tune(tmp_path)
    open_study(tune, open_storage(tune), max_epochs=1)
    single = journal_tune(tmp_path, mode="single")
    with pytest.raises((ConfigError, ValueError)):
        open_study(single, open_storage(single), max_epochs=1)


WORKER = textwrap.dedent(
    """
    import sys, time
    from explorec.config.tuning import PrunerConfig, TuneConfig
    from explorec.tuning.study import open_storage, open_study, run_until_budget, mark_worker

    def objective(trial):
        mark_worker(trial)
        x = trial.suggest_float("x", 0.0, 1.0)
        time.sleep(0.3)
        return x, 1.0 - x * x

    tune = TuneConfig(storage=sys.argv[1], study_name="parallel", n_trials=8)
    study = open_study(tune, open_storage(tune), max_epochs=1, worker_index=int(sys.argv[2]))
    print(run_until_budget(study, objective, tune.n_trials))
    """
)


def test_two_worker_processes_on_a_journal_file_share_one_budget(tmp_path: Path) -> None:
    url = f"journal:{tmp_path / 'parallel.log'}"
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, url, str(index)], stdout=subprocess.PIPE, text=True)
        for index in range(2)
    ]
    ran = [int(worker.communicate(timeout=120)[0].strip().splitlines()[-1]) for worker in workers]
    tune = TuneConfig(storage=url, study_name="parallel", n_trials=8)
    study = open_study(tune, open_storage(tune), max_epochs=1)
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert len(set(numbers)) == len(numbers)
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sum(ran) == len(trials)
    assert 8 <= len(trials) <= 9  # two workers may both start the last trial (documented race)
    pids = {t.user_attrs[WORKER_ATTR]["pid"] for t in trials}
    assert len(pids) == 2  # both workers ran trials


def test_hyperband_prunes_weak_trials_and_keeps_the_strongest() -> None:
    hyperband = PrunerConfig(name="hyperband", min_resource=1, reduction_factor=3)
    pruner = build_pruner(TuneConfig(mode="single", pruner=hyperband), max_epochs=9)
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(direction="maximize", pruner=pruner, sampler=sampler)

    def learning_curve(trial: optuna.Trial) -> float:
        """A trial whose value after each epoch grows with its quality, so rungs rank trials by quality."""
        quality = trial.suggest_float("quality", 0.0, 1.0)
        for epoch in range(9):
            trial.report(quality * (epoch + 1), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return quality * 9

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(learning_curve, n_trials=30)
    epochs = [len(trial.intermediate_values) for trial in study.trials]
    strongest = max(study.trials, key=lambda trial: trial.params["quality"])
    assert strongest.state == TrialState.COMPLETE
    assert any(trial.state == TrialState.PRUNED for trial in study.trials)
    assert max(epochs) == 9 and sum(epochs) < 30 * 9
