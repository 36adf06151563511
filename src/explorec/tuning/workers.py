"""Run a study: one parent MLflow run, N worker processes on the shared storage, stale-trial recovery.

`run_study` is the coordinator. With `n_workers == 1` trials run in this process; otherwise N processes
(`python -m explorec.tuning.workers <spec.json>`) each open the same storage and run trials until the budget
is met. The parent run id is passed to every worker explicitly (in the spec), never through global state.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from explorec.config import ExplorecConfig, config_hash, from_dict, to_dict
from explorec.config.tuning import TuneConfig
from explorec.errors import ExplorecError
from explorec.policies.spec import PolicySpec

PARENT_RUN_ATTR = "mlflow_parent_run_id"
MAX_ROUNDS = 3


class WorkerError(ExplorecError):
    """A tuning worker process exited with an error."""


@dataclass(frozen=True)
class StudyRun:
    """What one `run_study` call did: where the study lives, its parent run, trials run, wall time."""

    study_name: str
    storage_url: str
    parent_run_id: str
    tracking_uri: str
    trials_run: int
    recovered_trials: list[int]
    wall_time_s: float


def threads_per_worker(cfg: ExplorecConfig, n_workers: int) -> int:
    """Split the machine's cores between workers (at most the configured thread count each)."""
    cores = os.cpu_count() or 1
    return max(1, min(cfg.trainer.num_threads, cores // n_workers))


def blas_threads_per_worker(n_workers: int) -> int:
    """Return each worker's share of the cores for numpy's BLAS pool (oversubscription slows every worker)."""
    return max(1, (os.cpu_count() or 1) // n_workers)


def ensure_parent_run(
    study: Any, cfg: ExplorecConfig, tune: TuneConfig, *, storage_url: str
) -> tuple[str, str]:
    """Return (tracking URI, parent run id): the study's stored parent run when it exists, else a new one."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from explorec.tracking.owner import owner_tags
    from explorec.tracking.store import configure_tracking, run_tags

    target = configure_tracking(cfg.tracking)
    client = MlflowClient(target.tracking_uri)
    stored = study.user_attrs.get(PARENT_RUN_ATTR)
    if stored:
        try:
            client.get_run(stored)
            for key, value in owner_tags().items():  # this process owns the resumed run now
                client.set_tag(stored, key, value)
            client.update_run(stored, status="RUNNING")
            return target.tracking_uri, stored
        except MlflowException:
            pass  # the study outlived its tracking store: start a new parent run
    tags = run_tags(
        config_hash=config_hash(cfg),
        data_fingerprint="",
        extra={"kind": "optuna_study", "optuna.study": tune.study_name, "optuna.storage": storage_url},
    )
    run = client.create_run(target.experiment_id, run_name=f"tune-{tune.study_name}", tags=tags)
    study.set_user_attr(PARENT_RUN_ATTR, run.info.run_id)
    return target.tracking_uri, run.info.run_id


def run_study(cfg: ExplorecConfig, tune: TuneConfig, policy: PolicySpec) -> StudyRun:
    """Open (or resume) the study, recover stale trials, run workers until the budget is met."""
    from mlflow import MlflowClient

    from explorec.tuning.objective import load_context
    from explorec.tuning.study import (
        budget_of,
        open_storage,
        open_study,
        recover_stale_trials,
        resolve_storage_url,
        storage_label,
    )

    started = time.perf_counter()
    storage = open_storage(tune)
    study = open_study(tune, storage, max_epochs=cfg.trainer.max_epochs)
    label = storage_label(resolve_storage_url(tune.storage))  # no password in tags or summaries
    tracking_uri, parent_run_id = ensure_parent_run(study, cfg, tune, storage_url=label)
    worker_cfg = replace(
        cfg, trainer=replace(cfg.trainer, num_threads=threads_per_worker(cfg, tune.n_workers))
    )
    context = load_context(worker_cfg, tune, policy, parent_run_id=parent_run_id)  # warms the caches
    MlflowClient(tracking_uri).set_tag(parent_run_id, "data_fingerprint", context.dataset.fingerprint)
    recovered = recover_stale_trials(study, storage, tune)
    fail_orphaned_runs(study, recovered, tracking_uri)
    trials_run = 0
    for _ in range(MAX_ROUNDS):
        if budget_of(study, tune.n_trials).remaining == 0:
            break
        try:
            if tune.n_workers == 1:
                trials_run += run_in_process(context, study)
            else:
                trials_run += run_worker_processes(worker_cfg, tune, policy, parent_run_id)
        finally:  # also when a worker died: its trial is failed (and re-queued) now, not at the rerun
            newly_recovered = recover_stale_trials(study, storage, tune)
            fail_orphaned_runs(study, newly_recovered, tracking_uri)
            recovered += newly_recovered
    return StudyRun(
        study_name=tune.study_name,
        storage_url=label,
        parent_run_id=parent_run_id,
        tracking_uri=tracking_uri,
        trials_run=trials_run,
        recovered_trials=recovered,
        wall_time_s=time.perf_counter() - started,
    )


def fail_orphaned_runs(study: Any, trial_numbers: list[int], tracking_uri: str) -> None:
    """End as FAILED the MLflow runs of trials whose worker died (they would stay RUNNING forever)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    trials = {trial.number: trial for trial in study.get_trials(deepcopy=False)}
    for number in trial_numbers:
        run_id = trials[number].user_attrs.get("mlflow_run_id")
        if run_id:
            client.set_tag(run_id, "optuna.state", "FAIL (worker gone; retried)")
            client.set_terminated(run_id, "FAILED")


def run_in_process(context: Any, study: Any) -> int:
    """Run trials in this process until the budget is met; return how many ran."""
    from explorec.tuning.objective import make_objective
    from explorec.tuning.study import run_until_budget

    return run_until_budget(study, make_objective(context), context.tune.n_trials)


def run_worker_processes(
    cfg: ExplorecConfig, tune: TuneConfig, policy: PolicySpec, parent_run_id: str
) -> int:
    """Start `tune.n_workers` worker processes on the shared storage, wait for all; return trials they ran."""
    with tempfile.TemporaryDirectory(prefix="explorec-tune-") as scratch:
        processes, reports = [], []
        for index in range(tune.n_workers):
            spec = Path(scratch) / f"worker-{index}.json"
            report = Path(scratch) / f"worker-{index}.result.json"
            spec.write_text(json.dumps(worker_spec(cfg, tune, policy, parent_run_id, index, report)))
            command = [sys.executable, "-m", "explorec.tuning.workers", str(spec)]
            processes.append(subprocess.Popen(command, env={**os.environ, "PYTHONUNBUFFERED": "1"}))
            reports.append(report)
        codes = [process.wait() for process in processes]
        if any(codes):
            raise WorkerError(workers_failed_message(codes))
        return sum(json.loads(report.read_text())["trials_run"] for report in reports)


def how_it_ended(code: int) -> str:
    """Say how a process with this return code ended: `exited 1` or `was killed by SIGKILL`."""
    if code >= 0:
        return f"exited {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"


def workers_failed_message(codes: list[int]) -> str:
    """Say which workers failed and how (exit status or the signal that killed them), and what to do."""
    ended = [f"worker {index} {how_it_ended(code)}" for index, code in enumerate(codes) if code]
    return (
        f"tuning {'; '.join(ended)} (see the output above); rerun the same command to finish the study: "
        "a killed worker's trial is failed and retried with the same parameters"
    )


def worker_spec(
    cfg: ExplorecConfig,
    tune: TuneConfig,
    policy: PolicySpec,
    parent_run_id: str,
    worker_index: int,
    report_path: Path,
) -> dict[str, Any]:
    """Return the JSON-serialisable arguments of one worker process."""
    return {
        "config": to_dict(cfg),
        "tune": asdict(tune),
        "policy": asdict(policy),
        "parent_run_id": parent_run_id,
        "worker_index": worker_index,
        "report_path": str(report_path),
    }


def tune_from_dict(values: dict[str, Any]) -> TuneConfig:
    """Rebuild a TuneConfig from its plain dict."""
    from omegaconf import OmegaConf

    tune = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TuneConfig), values))
    assert isinstance(tune, TuneConfig)
    return tune


def run_worker(spec: dict[str, Any]) -> int:
    """Body of one worker process: open the shared study, run trials until the budget is met."""
    from threadpoolctl import threadpool_limits

    from explorec.tuning.objective import load_context, make_objective
    from explorec.tuning.study import open_storage, open_study, run_until_budget

    cfg, tune = from_dict(spec["config"]), tune_from_dict(spec["tune"])
    policy = PolicySpec(**spec["policy"])
    study = open_study(
        tune, open_storage(tune), max_epochs=cfg.trainer.max_epochs, worker_index=spec["worker_index"]
    )
    context = load_context(cfg, tune, policy, parent_run_id=spec["parent_run_id"])
    with threadpool_limits(limits=blas_threads_per_worker(tune.n_workers)):
        return run_until_budget(study, make_objective(context), tune.n_trials)


def main(argv: list[str] | None = None) -> int:
    """Entry point of a worker process: `python -m explorec.tuning.workers <spec.json>`."""
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text())
    trials_run = run_worker(spec)
    Path(spec["report_path"]).write_text(json.dumps({"trials_run": trials_run}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
