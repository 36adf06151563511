"""One Prefect home per project folder: where a command's flow runs land, and the UI addresses links use.

`explorec up` serves the home's Prefect database (`mlruns/prefect/prefect.db`) and its MLflow store. A flow
command run from the shell lands in the same database:
- while the Prefect server that `explorec up` started for this home answers, the command uses its API
  (PREFECT_API_URL): no server of its own to start, and the run shows in the UI as it happens;
- otherwise it starts Prefect's temporary server on the home's database (PREFECT_HOME and the database URL
  set as `explorec up` sets them), so the run is there when `explorec up` starts later. Starting it is
  serialised by a lock beside the database, so two first commands never create and migrate it at once.
A PREFECT_API_URL set by the person (or a test harness) is used as it is.

Links: MLflow runs are tagged with their flow run's UI page and Prefect artifacts link MLflow pages, at the
running stack's addresses, or else at the ones `explorec up` serves by default (127.0.0.1, ports
EXPLOREC_PREFECT_PORT / EXPLOREC_MLFLOW_PORT, 4200 / 5000 unless set) — where those runs will be found.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

from explorec.pipeline.servers import (
    HOST,
    StoreLayout,
    default_ports,
    http_ok,
    is_same_process,
    prefect_database_lock,
    read_state,
    store_layout,
)
from explorec.tracking.links import MLFLOW_UI_ENV, PREFECT_UI_ENV

SQLITE_SETTINGS = {
    # the same waits as the `explorec up` server: several processes share one SQLite database
    "PREFECT_SERVER_DATABASE_TIMEOUT": "60",
    "PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT": "30",
}


@dataclass(frozen=True)
class PrefectTarget:
    """Where this process's flow runs go: a running server ("server"), the home ("home") or "explicit"."""

    mode: str
    api_url: str | None
    prefect_ui_url: str | None
    mlflow_ui_url: str | None
    layout: StoreLayout


def running_stack(layout: StoreLayout) -> tuple[str, str | None] | None:
    """Return (Prefect URL, MLflow URL or None) of a live `explorec up` of this home, None when there is none.

    Live: the recorded prefect-server process still runs (same start time) and its API answers health.
    """
    if not layout.state_file.is_file():
        return None
    try:
        state = json.loads(layout.state_file.read_text())
    except (OSError, ValueError):
        return None
    services = {service.name: service for service in read_state(layout)}
    prefect, mlflow = services.get("prefect-server"), services.get("mlflow-server")
    prefect_url = state.get("prefect_url") if isinstance(state, dict) else None
    if prefect is None or not prefect_url or not is_same_process(prefect):
        return None
    if not http_ok(f"{prefect_url}/api/health"):
        return None
    mlflow_url = state.get("mlflow_url") if mlflow is not None and is_same_process(mlflow) else None
    return str(prefect_url), mlflow_url


def _explicit_api_url(environ: MutableMapping[str, str]) -> str | None:
    """Return a Prefect API URL the person or a harness chose (environment, or Prefect's live settings)."""
    if environ.get("PREFECT_API_URL"):
        return environ["PREFECT_API_URL"]
    if "prefect" in sys.modules:  # already configured in this process (e.g. prefect_test_harness)
        from prefect.settings import PREFECT_API_URL

        return PREFECT_API_URL.value() or None
    return None


def home_environment(layout: StoreLayout) -> dict[str, str]:
    """Return the settings that put Prefect's home and database in the project folder (as `explorec up`)."""
    return {
        "PREFECT_HOME": str(layout.prefect_home),
        "PREFECT_API_DATABASE_CONNECTION_URL": layout.prefect_database_url,
        **SQLITE_SETTINGS,
    }


def use_prefect_home(
    home: Path | None = None, environ: MutableMapping[str, str] | None = None
) -> PrefectTarget:
    """Point this process's Prefect at the home (see the module docstring); call before Prefect is imported.

    Sets the environment: PREFECT_* (values the person set are kept) and the UI addresses that
    `explorec.tracking.links` reads. Returns where flow runs will go.
    """
    env = os.environ if environ is None else environ
    layout = store_layout(home)
    layout.prefect_home.mkdir(parents=True, exist_ok=True)  # Prefect makes only the last level itself
    prefect_port, mlflow_port = default_ports()
    explicit = _explicit_api_url(env)
    if explicit:
        ui = explicit.rstrip("/").removesuffix("/api")
        target = PrefectTarget("explicit", explicit, ui, env.get(MLFLOW_UI_ENV), layout)
    elif (stack := running_stack(layout)) is not None:
        prefect_url, mlflow_url = stack
        env["PREFECT_API_URL"] = f"{prefect_url}/api"
        env.setdefault("PREFECT_HOME", str(layout.prefect_home))
        target = PrefectTarget("server", f"{prefect_url}/api", prefect_url, mlflow_url, layout)
    else:
        for key, value in home_environment(layout).items():
            env.setdefault(key, value)
        prefect_ui, mlflow_ui = f"http://{HOST}:{prefect_port}", f"http://{HOST}:{mlflow_port}"
        target = PrefectTarget("home", None, prefect_ui, mlflow_ui, layout)
    for key, value in ((PREFECT_UI_ENV, target.prefect_ui_url), (MLFLOW_UI_ENV, target.mlflow_ui_url)):
        if value:
            env[key] = value
        else:
            env.pop(key, None)
    return target


def ensure_prefect_api(target: PrefectTarget) -> None:
    """In "home" mode, start Prefect's temporary server on the home's database now, under the lock.

    Prefect keeps one temporary server per process and reuses it for every flow run of the command; it
    stops when the command ends. In the other modes there is nothing to start.
    """
    if target.mode != "home":
        return
    from prefect.server.api.server import SubprocessASGIServer

    with prefect_database_lock(target.layout):
        SubprocessASGIServer().start()


def mlflow_ui_url(tracking_uri: str, home: Path | None = None) -> str | None:
    """Return the MLflow UI that shows runs of `tracking_uri`, or None when none is known.

    An MLflow server URI is its own UI; the home's SQLite store is what `explorec up` serves (at the address
    set by `use_prefect_home`); any other store has no known UI.
    """
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    if tracking_uri == store_layout(home).mlflow_backend_uri:
        return os.environ.get(MLFLOW_UI_ENV) or None
    return None
