"""`explorec serve`: the recommendation service over the registry's champion, and what it loads."""

from __future__ import annotations

import functools
import gc
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from explorec.errors import ExplorecError
from explorec.registry.guard import guard_champion
from explorec.registry.servable import refusal_reason
from explorec.serving.service import ServedModel, ServingRefusedError

if TYPE_CHECKING:
    from collections.abc import Callable

    from mlflow import MlflowClient

    from explorec.config import ExplorecConfig
    from explorec.serving.recommender import Recommender

logger = logging.getLogger("explorec.service")


class ServiceError(ExplorecError):
    """The service cannot start: nothing servable in the registry, or its address or log is unusable."""


def load_recommender(name: str, version: str, torch_threads: int) -> Recommender:
    """Load a registered version's pyfunc and return the recommender inside it."""
    import mlflow

    model = mlflow.pyfunc.load_model(
        f"models:/{name}/{version}", model_config={"torch_threads": torch_threads}
    )
    return model.unwrap_python_model().recommender


def logging_recommenders(torch_threads: int) -> Callable[[str, str], Recommender]:
    """Load each registered version once, for an off-policy evaluation's replay of what served the log."""
    from mlflow.exceptions import MlflowException

    @functools.cache
    def load(name: str, version: str) -> Recommender:
        try:
            return load_recommender(name, version, torch_threads)
        except MlflowException as error:
            raise LookupError(
                f"{name} v{version}, which served logged slates, cannot be loaded: {error}"
            ) from None

    return load


class RegistrySource:
    """Follows a registry alias: serves the version it points at, once that version may be served."""

    def __init__(
        self,
        client: MlflowClient,
        name: str,
        alias: str,
        *,
        torch_threads: int = 1,
        exploration_floor: float = 0.0,
        floor_pool: int | None = None,
        guard_action: str | None = None,
    ) -> None:
        self.client, self.name, self.alias, self.torch_threads = client, name, alias, torch_threads
        self.exploration_floor, self.floor_pool = exploration_floor, floor_pool
        self.guard_action = guard_action
        """With an action (`restore` or `record`), an un-gated alias move is handed to the champion guard."""
        self._model: ServedModel | None = None
        self._refused: str | None = None
        self._lock = threading.Lock()

    def _aliased_version(self) -> str:
        """The version the alias points at now (ServingRefusedError when there is none)."""
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(self.name, self.alias).version)
        except MlflowException:
            raise ServingRefusedError(
                f"{self.name} has no @{self.alias}; run `explorec pipeline` first"
            ) from None

    def _load(self, version: str) -> ServedModel:
        """Check that `version` may be served, then load it."""
        tags = self.client.get_model_version(self.name, version).tags
        reason = refusal_reason(tags)
        if reason is not None:
            raise ServingRefusedError(f"{self.name} v{version} (@{self.alias}) is not served: {reason}")
        recommender = load_recommender(self.name, version, self.torch_threads)
        recommender.exploration_floor = self.exploration_floor
        recommender.exploration_floor_pool = self.floor_pool
        return ServedModel(self.name, version, recommender, time.time())

    def current(self) -> ServedModel:
        """The model being served (loaded on first use)."""
        with self._lock:
            if self._model is None:
                self._model = self._load(self._aliased_version())
            return self._model

    def refresh(self) -> str | None:
        """Load the alias' new version when it moved; a refused version leaves the old one serving."""
        version = self._aliased_version()
        current = self.current()
        if version == current.version or version == self._refused:
            return None
        try:
            loaded = self._load(version)
        except ServingRefusedError as refusal:
            self._refused = version
            if self.guard_action is None:
                return f"{refusal}; still serving v{current.version}"
            outcome = guard_champion(self.client, self.name, alias=self.alias, action=self.guard_action)
            if outcome.action == "recorded":
                self._refused = None  # now an audited forced promotion: served from the next check
            return f"{outcome.message}; still serving v{current.version}"
        with self._lock:
            self._model, self._refused = loaded, None
        return f"@{self.alias} moved: now serving {self.name} v{version} (was v{current.version})"


def serve(cfg: ExplorecConfig) -> int:
    """Run the service until interrupted; returns the exit code."""
    import uvicorn
    from mlflow import MlflowClient

    from explorec.serving.impressions import ImpressionLog
    from explorec.serving.service import RecommendationService, create_app
    from explorec.tracking.store import configure_tracking

    settings = cfg.service
    target = configure_tracking(cfg.tracking)
    source = RegistrySource(
        MlflowClient(tracking_uri=target.tracking_uri),
        cfg.tracking.registered_model,
        settings.alias,
        torch_threads=settings.torch_threads,
        exploration_floor=settings.exploration_floor,
        floor_pool=settings.exploration_floor_pool,
        guard_action=cfg.registry.unaudited_champion,
    )
    try:
        model = source.current()
    except ServingRefusedError as refusal:
        raise ServiceError(str(refusal)) from None
    log = ImpressionLog(settings.impression_log)
    service = RecommendationService(source, log, max_feedback_items=settings.max_feedback_items)
    new_items = service.warm_up()  # earlier additions, interest clusters and the text encoder, before serving
    app = create_app(service, max_body_bytes=settings.max_body_bytes, poll_seconds=settings.poll_seconds)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logger.info(
        "serving %s v%s (@%s) on http://%s:%d; impressions → %s; new items %s",
        model.name,
        model.version,
        settings.alias,
        settings.host,
        settings.port,
        log.location,
        "accepted" if new_items else "off (no text tower)",
    )
    # Everything loaded so far (model, encoder, libraries) lives as long as the process: keep it out of
    # the garbage collector's full passes, which would otherwise walk it while requests wait.
    gc.freeze()
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
    finally:
        log.close()
    return 0


def evaluate_logs(cfg: ExplorecConfig, version: str) -> dict[str, Any]:
    """Evaluate registered `version` on the impression log; record it as an MLflow run and on the version.

    The evaluation's `ope/*` metrics join the version's recorded metrics (`explorec.registry.records`),
    which the `ope_lift` gate reads when it is next decided (`explorec promote`).
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from explorec.registry.gates import decide
    from explorec.registry.records import version_metrics, write_version_metrics
    from explorec.serving.impressions import ImpressionLog
    from explorec.serving.log_evaluation import evaluate_on_logs
    from explorec.tracking.store import configure_tracking, metric_dict

    target = configure_tracking(cfg.tracking)
    client, name = MlflowClient(tracking_uri=target.tracking_uri), cfg.tracking.registered_model
    try:
        model_version = client.get_model_version(name, version)
    except MlflowException:
        raise ServiceError(f"{name} has no version {version!r}; see `explorec promote --dry-run`") from None
    log = ImpressionLog(cfg.service.impression_log)
    try:
        evaluation = evaluate_on_logs(
            load_recommender(name, version, cfg.service.torch_threads),
            log,
            seed=cfg.seed,
            logging_recommender=logging_recommenders(cfg.service.torch_threads),
        )
    except ValueError as error:
        raise ServiceError(str(error)) from None
    finally:
        log.close()
    metrics = evaluation.metrics()
    with mlflow.start_run(
        run_name=f"evaluate-logs v{version}", tags={"registered_model": name, "version": version}
    ) as run:
        mlflow.log_metrics(metric_dict(metrics))
    recorded = version_metrics(client, model_version)
    write_version_metrics(client, model_version, {**recorded, **metric_dict(metrics)})
    decision = decide({**recorded, **metrics}, None, cfg.gates)
    ope_rows = [row for row in decision.table if row.rule == "ope_lift"]
    return {
        "registered_model": name,
        "version": version,
        "run_id": run.info.run_id,
        "impression_log": log.location,
        "metrics": metrics,
        "lift_estimator": "pbm_snips" if not evaluation.why_no_exposures else "prefix_snips",
        "why_no_position_based": evaluation.why_no_exposures or None,
        "ope_gate": "passed"
        if ope_rows and ope_rows[0].passed
        else (ope_rows[0].reason if ope_rows else "n/a"),
    }


def has_logged_traffic(cfg: ExplorecConfig) -> bool:
    """Whether the configured impression log exists and holds at least one served slate."""
    from pathlib import Path

    from explorec.serving.impressions import SQLITE_PREFIX, ImpressionLog, resolve_log_url

    url = resolve_log_url(cfg.service.impression_log)
    if url.startswith(SQLITE_PREFIX) and not Path(url.removeprefix(SQLITE_PREFIX)).is_file():
        return False
    log = ImpressionLog(url)
    try:
        return log.counts()["impressions"] > 0
    finally:
        log.close()


def evaluate_candidate_on_logs(cfg: ExplorecConfig, version: str) -> tuple[str, dict[str, float]]:
    """Before the gates: evaluate a new version on the logged traffic, if any; (outcome line, metrics)."""
    from mlflow import MlflowClient

    from explorec.tracking.store import configure_tracking

    if not has_logged_traffic(cfg):
        return "no logged traffic", {}
    try:
        summary = evaluate_logs(cfg, version)
    except ServiceError as error:
        client = MlflowClient(tracking_uri=configure_tracking(cfg.tracking).tracking_uri)
        client.set_model_version_tag(
            cfg.tracking.registered_model, version, "ope.status", f"not evaluated: {error}"
        )
        return f"not evaluated on logged traffic: {error}", {}
    metrics = summary["metrics"]
    return (
        f"lift on {metrics['ope/n_impressions']:.0f} logged slates {metrics['ope/lift']:+.4f} "
        f"[{metrics['ope/lift_ci_low']:+.4f}, {metrics['ope/lift_ci_high']:+.4f}]"
    ), metrics
