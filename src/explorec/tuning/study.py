"""Study setup: storage (SQLite, any RDB URL, journal file), seeded sampler, pruner, resumable budget.

Resuming: a study is opened with `load_if_exists`, so rerunning the same `study_name` on the same storage
continues it. The budget counts COMPLETE + PRUNED trials; a rerun runs only the rest.

Stale trials (a worker was killed mid-trial) are failed and re-queued with the same parameters
(`RetryHeartbeatStaleTrialCallback`, at most `max_retry` times) in two ways:
- RDB storages record a heartbeat every `heartbeat_interval_s`; Optuna fails a trial whose heartbeat is older
  than `grace_period_s` when any worker starts its next trial (works across machines).
- Every trial records its worker (host, pid); at start and after each round of workers, a RUNNING trial whose
  worker process on this host is gone is failed at once (this is the only stale check a journal file has).
"""

from __future__ import annotations

import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from explorec.config import project_root
from explorec.config.tuning import TuneConfig

JOURNAL_SCHEME = "journal:"
POSTGRES_SCHEME, POSTGRES_DRIVER_SCHEME = "postgresql://", "postgresql+psycopg://"
WORKER_ATTR = "worker"
SQLITE_LOCK_TIMEOUT_S = 60


def resolve_storage_url(url: str) -> str:
    """Make relative `sqlite:///path` and `journal:path` URLs absolute under the project root.

    A bare `postgresql://` URL gets the installed driver, psycopg 3 (SQLAlchemy's default is psycopg2).
    """
    if url.startswith(POSTGRES_SCHEME):
        return POSTGRES_DRIVER_SCHEME + url.removeprefix(POSTGRES_SCHEME)
    if url.startswith(JOURNAL_SCHEME):
        path = Path(os.path.normpath(url.removeprefix(JOURNAL_SCHEME).removeprefix("//")))
        path = path if path.is_absolute() else project_root() / path
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"{JOURNAL_SCHEME}{path}"
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        path = project_root() / url.removeprefix(prefix)
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"{prefix}{path}"
    return url


def storage_label(url: str) -> str:
    """Return a storage URL fit to print or log: a server URL's password is masked."""
    if url.startswith(JOURNAL_SCHEME):
        return url
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def storage_file(url: str) -> Path | None:
    """Return the local file of a resolved SQLite or journal storage URL (None for a server URL)."""
    if url.startswith(JOURNAL_SCHEME):
        return Path(url.removeprefix(JOURNAL_SCHEME))
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:////") else None


def open_storage(tune: TuneConfig) -> Any:
    """Open the configured storage (its creation serialised across processes by a file lock)."""
    url = resolve_storage_url(tune.storage)
    path = storage_file(url)
    if path is None:
        return _open_storage(url, tune)
    from explorec.tracking.store import store_lock

    with store_lock(path):  # Optuna creates a new SQLite schema or journal file without a lock
        return _open_storage(url, tune)


def _open_storage(url: str, tune: TuneConfig) -> Any:
    """Open a journal file, or an RDB with heartbeat and stale-trial retry."""
    import optuna
    from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    if url.startswith(JOURNAL_SCHEME):
        path = url.removeprefix(JOURNAL_SCHEME)
        return JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    engine_kwargs = {"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT_S}} if url.startswith("sqlite") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=tune.heartbeat_interval_s,
            grace_period=tune.grace_period_s,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=tune.max_retry),
        )


def build_sampler(tune: TuneConfig, *, worker_index: int = 0) -> Any:
    """Return the seeded sampler; worker i is seeded `seed + i` so parallel workers do not propose twins."""
    import optuna

    seed = tune.seed + worker_index
    if tune.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if tune.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def build_pruner(tune: TuneConfig, *, max_epochs: int) -> Any:
    """Return the pruner of single mode (multi-objective studies never prune)."""
    import optuna

    spec = tune.pruner
    if tune.mode != "single" or spec.name == "none":
        return optuna.pruners.NopPruner()
    if spec.name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=spec.min_resource, max_resource=max_epochs, reduction_factor=spec.reduction_factor
        )
    if spec.name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=spec.min_resource, reduction_factor=spec.reduction_factor
        )
    return optuna.pruners.MedianPruner(
        n_startup_trials=spec.n_startup_trials, n_warmup_steps=spec.n_warmup_steps
    )


def study_directions(tune: TuneConfig) -> list[str]:
    """Maximise served NDCG@K, and in multi mode the diversity objective too."""
    return ["maximize"] if tune.mode == "single" else ["maximize", "maximize"]


def open_study(tune: TuneConfig, storage: Any, *, max_epochs: int, worker_index: int = 0) -> Any:
    """Create the named study or load it (resume); fail when the stored directions differ from the config."""
    import optuna

    study = optuna.create_study(
        study_name=tune.study_name,
        storage=storage,
        sampler=build_sampler(tune, worker_index=worker_index),
        pruner=build_pruner(tune, max_epochs=max_epochs),
        directions=study_directions(tune),
        load_if_exists=True,
    )
    if len(study.directions) != len(study_directions(tune)):
        from explorec.errors import ConfigError

        raise ConfigError(
            f"study {tune.study_name!r} exists with {len(study.directions)} objective(s) but tune.mode="
            f"{tune.mode!r} needs {len(study_directions(tune))}: choose another tune.study_name"
        )
    return study


def mark_worker(trial: Any) -> None:
    """Record which process runs the trial (host, pid, trial number) for the local stale check."""
    trial.set_user_attr(
        WORKER_ATTR, {"host": socket.gethostname(), "pid": os.getpid(), "trial": int(trial.number)}
    )


def process_is_gone(pid: int) -> bool:
    """Whether no live process has this pid on this host (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def worker_is_gone(trial: Any) -> bool:
    """Whether the trial's recorded worker ran on this host and has exited (unknown workers: False)."""
    worker = trial.user_attrs.get(WORKER_ATTR)
    if not isinstance(worker, dict) or worker.get("trial") != trial.number:
        return False  # not marked yet, or the mark was copied from the trial this one retries
    return worker.get("host") == socket.gethostname() and process_is_gone(int(worker["pid"]))


def recover_stale_trials(study: Any, storage: Any, tune: TuneConfig) -> list[int]:
    """Fail RUNNING trials whose worker is gone (heartbeat, local pid); re-queue them; return numbers."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState

    running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # RDB heartbeat: fails and re-queues by itself
        retry = RetryHeartbeatStaleTrialCallback(max_retry=tune.max_retry)
        for trial in study.get_trials(deepcopy=True, states=(TrialState.RUNNING,)):
            if worker_is_gone(trial) and storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                retry(study, storage.get_trial(trial._trial_id))
    still_running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    return sorted(running - still_running)


@dataclass(frozen=True)
class Budget:
    """Trial counts of a study against its budget (finished = COMPLETE + PRUNED)."""

    n_trials: int
    complete: int
    pruned: int
    failed: int
    running: int
    waiting: int

    @property
    def finished(self) -> int:
        """Trials that count against the budget."""
        return self.complete + self.pruned

    @property
    def remaining(self) -> int:
        """Trials still to start: the budget less finished and running trials."""
        return max(self.n_trials - self.finished - self.running, 0)


def budget_of(study: Any, n_trials: int) -> Budget:
    """Count the study's trials by state against `n_trials`."""
    from optuna.trial import TrialState

    states = [trial.state for trial in study.get_trials(deepcopy=False)]
    return Budget(
        n_trials=n_trials,
        complete=states.count(TrialState.COMPLETE),
        pruned=states.count(TrialState.PRUNED),
        failed=states.count(TrialState.FAIL),
        running=states.count(TrialState.RUNNING),
        waiting=states.count(TrialState.WAITING),
    )


def run_until_budget(study: Any, objective: Any, n_trials: int) -> int:
    """Run trials one at a time (queued retries first) until the budget is met or started; return how many.

    Counting RUNNING trials of other workers keeps N workers from overshooting the budget; an objective
    error stops this worker (the trial is FAIL and the error propagates). A progress line on stderr follows
    every trial (finished trials of all workers against the budget, with an ETA).
    """
    from explorec.progress import Progress

    budget = budget_of(study, n_trials)
    progress = Progress(f"tuning {study.study_name}", n_trials, unit="trials", interval=0.0)
    progress.done = budget.finished
    progress.start(f"{budget.finished} finished before, {budget.remaining} to run in this worker at most")
    ran, finished = 0, []
    while budget.remaining > 0:
        study.optimize(
            objective,
            n_trials=1,
            catch=(),
            gc_after_trial=True,
            callbacks=[lambda _, trial: finished.append(trial)],
        )
        ran += 1
        budget = budget_of(study, n_trials)
        progress.update(budget.finished, trial_line(finished[-1]) if finished else "")
    progress.finish(f"{ran} run by this worker")
    return ran


def trial_line(trial: Any) -> str:
    """Say how a finished trial ended: its number, state, values and parameters."""
    values = "" if trial.values is None else " values " + ", ".join(f"{value:.4g}" for value in trial.values)
    params = ", ".join(f"{key}={value}" for key, value in trial.params.items())
    return f"trial {trial.number} {trial.state.name.lower()}{values} ({params})"
