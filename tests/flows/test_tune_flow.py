"""Tune flow on a tiny synthetic data set: nested MLflow runs, resume after a killed worker, two workers."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from explorec.config import compose
from explorec.tracking.store import configure_tracking
from explorec.tuning.study import WORKER_ATTR, open_storage, open_study
from flows.tune import tune_flow

from .conftest import TINY_SYNTHETIC

TINY = [
    *TINY_SYNTHETIC,
    "trainer.max_epochs=1",
    "tune.diversity_objective=coverage",
    "tune.search_space.model.embedding_dim.choices=[8,16]",
]


def nested_runs(summary: dict) -> list:
    """The MLflow runs whose parent is the study's parent run."""
    client = MlflowClient(summary["tracking_uri"])
    parent = client.get_run(summary["parent_run_id"])
    return client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{summary['parent_run_id']}'"
    )


def test_a_three_trial_study_writes_nested_runs_under_one_parent() -> None:
    summary = tune_flow(overrides=[*TINY, "tune.n_trials=3", "tune.study_name=three"])
    assert (summary["n_complete"], summary["n_running"], summary["n_failed"]) == (3, 0, 0)
    children = nested_runs(summary)
    assert len(children) == 3
    assert {run.data.tags["optuna.trial"] for run in children} == {"0", "1", "2"}
    assert all(run.info.status == "FINISHED" for run in children)
    assert all("served/val/ndcg_at_10" in run.data.metrics for run in children)
    assert {run.data.params["model.embedding_dim"] for run in children} <= {"8", "16"}
    assert not any(key.startswith(("tune.", "simulate.", "gates.")) for key in children[0].data.params)
    client = MlflowClient(summary["tracking_uri"])
    for child in children:  # every trial's training curves are a figure among its artifacts
        assert [item.path for item in client.list_artifacts(child.info.run_id, "plots")] == [
            "plots/training_curves.png"
        ]
    parent = client.get_run(summary["parent_run_id"])
    artifacts = {item.path for item in client.list_artifacts(summary["parent_run_id"])}
    assert {
        "pareto_front.png",
        "trials.csv",
        "trials.md",
        "importances.json",
        "chosen_trial.json",
    } <= artifacts
    assert summary["pareto_size"] >= 1
    chosen = summary["chosen_trial"]
    assert parent.data.tags["chosen_trial"] == str(chosen["number"])
    assert set(chosen["params"]) == {"model.embedding_dim", "policy.exploration_rate"}
    assert chosen["mlflow_run_id"] in {run.info.run_id for run in children}


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.slow
def test_resume_after_a_killed_worker_fails_and_retries_its_trial() -> None:
    overrides = [*TINY, "tune.n_trials=2", "tune.study_name=resume"]
    cfg = compose(overrides)
    tune = cfg.tune
    target = configure_tracking(cfg.tracking)
    orphan_run = MlflowClient(target.tracking_uri).create_run(target.experiment_id).info.run_id
    study = open_study(tune, open_storage(tune), max_epochs=1)
    stale = study.ask()
    stale.set_user_attr("mlflow_run_id", orphan_run)
    stale.suggest_categorical("model.embedding_dim", [8, 16])
    stale.suggest_float("policy.exploration_rate", 0.0, 0.5)
    stale.set_user_attr(
        WORKER_ATTR, {"host": socket.gethostname(), "pid": _dead_pid(), "trial": stale.number}
    )

    summary = tune_flow(overrides=overrides)
    assert summary["recovered_trials"] == [stale.number]
    assert (summary["n_complete"], summary["n_running"], summary["n_failed"]) == (2, 0, 1)
    trials = open_study(tune, open_storage(tune), max_epochs=1).get_trials()
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == stale.number]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE
    assert retried[0].params == trials[stale.number].params
    assert MlflowClient(target.tracking_uri).get_run(orphan_run).info.status == "FAILED"


@pytest.mark.slow
def test_two_workers_on_a_journal_file_lose_no_trial(isolated_home: Path) -> None:
    overrides = [*TINY, "tune.n_trials=4", "tune.n_workers=2", "tune.storage=journal:mlruns/optuna.log"]
    summary = tune_flow(overrides=[*overrides, "tune.study_name=parallel"])
    assert (isolated_home / "mlruns" / "optuna.log").is_file()
    assert (summary["n_complete"], summary["n_running"], summary["n_failed"]) == (4, 0, 0)
    children = nested_runs(summary)
    numbers = sorted(int(run.data.tags["optuna.trial"]) for run in children)
    assert numbers == [0, 1, 2, 3]
    tune = compose([*overrides, "tune.study_name=parallel"]).tune
    trials = open_study(tune, open_storage(tune), max_epochs=1).get_trials()
    assert len({t.user_attrs[WORKER_ATTR]["pid"] for t in trials}) == 2


@pytest.mark.slow
def test_single_objective_mode_prunes_through_lightning() -> None:
    overrides = [
        *TINY,
        "trainer.max_epochs=4",
        "tune=pruned",
        "tune.n_trials=5",
        "tune.pruner.name=median",  # the preset's successive halving needs more trials than a tiny test runs
        "tune.pruner.n_startup_trials=1",
        "tune.pruner.n_warmup_steps=0",
    ]
    summary = tune_flow(overrides=overrides)
    assert summary["mode"] == "single"
    assert summary["n_complete"] + summary["n_pruned"] == 5
    assert summary["n_pruned"] >= 1
    assert summary["total_epochs"] < 5 * 4
    pruned = [run for run in nested_runs(summary) if run.data.tags["optuna.state"] == "PRUNED"]
    assert len(pruned) == summary["n_pruned"]
    assert all(run.info.status == "KILLED" for run in pruned)
    assert all(run.data.metrics["train/epochs_run"] < 4 for run in pruned)
