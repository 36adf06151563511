"""Local Prefect and MLflow servers and the deployment-serving process: start, health-check, stop.

Every process starts in its own session (process group), so stopping a service stops its whole tree;
stores live in the project folder (`mlruns/prefect/`, `mlruns/mlflow.db`, `mlruns/artifacts/`) and
telemetry is off. `up()` and `down()` are the functions behind `explorec up` and `explorec down`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from explorec.errors import ExplorecError
from explorec.tracking.links import MLFLOW_UI_ENV, PREFECT_UI_ENV
from explorec.tracking.locks import exclusive_lock
from explorec.tracking.owner import is_alive, start_time
from explorec.tracking.owner import is_same_process as is_same_process_pid

HOST = "127.0.0.1"
PREFECT_PORT = 4200
MLFLOW_PORT = 5000
PREFECT_PORT_ENV = "EXPLOREC_PREFECT_PORT"
MLFLOW_PORT_ENV = "EXPLOREC_MLFLOW_PORT"
PREFECT_LOCK_TIMEOUT_S = 600.0
TELEMETRY_OFF: dict[str, str] = {
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}


class ServerError(ExplorecError):
    """A server did not start, did not become healthy, or its port is already taken."""

    exit_code = 9


@dataclass(frozen=True)
class Service:
    """One started process: its name, pid (= its process-group id), URL (if it serves one) and log file."""

    name: str
    pid: int
    url: str | None
    log: str
    start_time: str | None = None


@dataclass(frozen=True)
class StoreLayout:
    """Where the servers keep their state, inside a project folder (`home`)."""

    home: Path

    @property
    def mlruns(self) -> Path:
        """The folder holding every store."""
        return self.home / "mlruns"

    @property
    def prefect_home(self) -> Path:
        """PREFECT_HOME of the server and the serve process (its SQLite database lives here)."""
        return self.mlruns / "prefect"

    @property
    def prefect_database_url(self) -> str:
        """The Prefect server's SQLite database URL."""
        return f"sqlite+aiosqlite:///{self.prefect_home / 'prefect.db'}"

    @property
    def prefect_lock(self) -> Path:
        """The lock file that serialises creating and migrating the Prefect database."""
        return self.prefect_home / "prefect.db.lock"

    @property
    def mlflow_backend_uri(self) -> str:
        """The MLflow server's backend store, the same database the embedded default writes to."""
        return f"sqlite:///{self.mlruns / 'mlflow.db'}"

    @property
    def artifacts(self) -> Path:
        """The MLflow artifact folder."""
        return self.mlruns / "artifacts"

    @property
    def logs(self) -> Path:
        """Where each service's stdout and stderr go."""
        return self.mlruns / "logs"

    @property
    def state_file(self) -> Path:
        """The JSON file listing the services `explorec up --detach` started, read by `explorec down`."""
        return self.mlruns / "servers.json"


def default_port(variable: str, default: int) -> int:
    """Return a port `explorec up` uses by default: environment variable `variable` if set, else `default`."""
    value = os.environ.get(variable, "").strip()
    return int(value) if value.isdigit() else default


def default_ports() -> tuple[int, int]:
    """Return the default (Prefect, MLflow) ports of `explorec up` (EXPLOREC_PREFECT_PORT / _MLFLOW_PORT)."""
    return default_port(PREFECT_PORT_ENV, PREFECT_PORT), default_port(MLFLOW_PORT_ENV, MLFLOW_PORT)


def store_layout(home: Path | None = None) -> StoreLayout:
    """Return the store layout of a project folder (default: EXPLOREC_HOME or the working directory)."""
    from explorec.config import project_root

    return StoreLayout((home or project_root()).resolve())


def _prefect_lock_timeout(path: Path, timeout_s: float) -> ServerError:
    """Return the error of a Prefect database lock held too long by another process."""
    return ServerError(
        f"another explorec process has held {path} for {timeout_s:g} s while starting Prefect on this "
        "home; wait for it to finish and retry"
    )


@contextlib.contextmanager
def prefect_database_lock(layout: StoreLayout, timeout_s: float = PREFECT_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the lock under which a Prefect server starts on the home's database (and may migrate it).

    Prefect creates and migrates its SQLite database at server start without a lock of its own; two
    servers starting on one fresh database at once can break it.
    """
    with exclusive_lock(layout.prefect_lock, timeout_s, _prefect_lock_timeout):
        yield


def free_port(host: str = HOST) -> int:
    """Return a TCP port on `host` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def is_listening(port: int, host: str = HOST) -> bool:
    """Return True when something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def _script(name: str) -> str:
    """Return the console script `name` installed beside this interpreter (falls back to PATH)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def service_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return this process's environment with telemetry off and `extra` applied."""
    return {**os.environ, **TELEMETRY_OFF, **(extra or {})}


def prefect_server_command(port: int, host: str = HOST) -> list[str]:
    """Return the `prefect server start` command bound to host:port, analytics off."""
    return [_script("prefect"), "server", "start", "--host", host, "--port", str(port), "--analytics-off"]


def prefect_server_environment(layout: StoreLayout, port: int, host: str = HOST) -> dict[str, str]:
    """Return the Prefect server's environment: home and database in the project, the UI on this port."""
    return service_environment(
        {
            "PREFECT_SERVER_UI_API_URL": f"http://{host}:{port}/api",
            "PREFECT_HOME": str(layout.prefect_home),
            "PREFECT_API_DATABASE_CONNECTION_URL": layout.prefect_database_url,
            "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
            # SQLite on a busy small machine: wait for locks instead of answering 503, and log when not.
            "PREFECT_SERVER_DATABASE_TIMEOUT": "60",
            "PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT": "30",
            "PREFECT_API_LOG_RETRYABLE_ERRORS": "true",
        }
    )


def mlflow_server_command(layout: StoreLayout, port: int, host: str = HOST) -> list[str]:
    """Return the `mlflow server` command: SQLite backend and artifacts under the project's mlruns/.

    `--default-artifact-root` is a local folder so that runs logged by the embedded default (SQLite, same
    database) and runs logged through the server share one artifact store that the UI can show;
    `--artifacts-destination` serves `mlflow-artifacts:/` locations from the same folder.
    """
    return [
        _script("mlflow"),
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--backend-store-uri",
        layout.mlflow_backend_uri,
        "--default-artifact-root",
        layout.artifacts.as_uri(),
        "--artifacts-destination",
        str(layout.artifacts),
        "--workers",
        "1",
    ]


def mlflow_server_environment() -> dict[str, str]:
    """Return the MLflow server's environment: no job-execution workers (GenAI jobs explorec never uses).

    Job execution starts a job runner and seven huey consumers, each importing MLflow: on two cores that
    slows the server's start by about a minute.
    """
    return service_environment({"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})


def serve_command() -> list[str]:
    """Return the command that serves every flow as a deployment (`python -m flows.serve`)."""
    return [sys.executable, "-m", "flows.serve"]


def register_command(work_pool: str) -> list[str]:
    """Return the command that registers every flow's deployment to a process work pool, then exits."""
    return [sys.executable, "-m", "flows.serve", "--work-pool", work_pool]


def worker_command(work_pool: str) -> list[str]:
    """Return `prefect worker start` polling `work_pool` (a process worker: each flow run a subprocess)."""
    return [_script("prefect"), "worker", "start", "--pool", work_pool, "--type", "process"]


def serve_environment(layout: StoreLayout, prefect_url: str, mlflow_url: str) -> dict[str, str]:
    """Return the serve process's environment: the Prefect API to poll, the project folder, the UIs.

    The UI addresses are what flow runs link to (`explorec.tracking.links`).
    """
    return service_environment(
        {
            "PREFECT_API_URL": f"{prefect_url}/api",
            "PREFECT_HOME": str(layout.prefect_home),
            "EXPLOREC_HOME": str(layout.home),
            PREFECT_UI_ENV: prefect_url,
            MLFLOW_UI_ENV: mlflow_url,
        }
    )


def start_service(
    name: str, command: Sequence[str], env: Mapping[str, str], layout: StoreLayout, url: str | None
) -> Service:
    """Start `command` in a new session (its own process group), logging to mlruns/logs/<name>.log."""
    layout.logs.mkdir(parents=True, exist_ok=True)
    log_path = layout.logs / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command),
            env=dict(env),
            cwd=layout.home,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Service(name=name, pid=process.pid, url=url, log=str(log_path), start_time=start_time(process.pid))


def is_same_process(service: Service) -> bool:
    """Return True when `service.pid` still names the process that was started (not a reused pid)."""
    return is_same_process_pid(service.pid, service.start_time)


def log_tail(service: Service, lines: int = 30) -> str:
    """Return the last lines of a service's log, for error messages."""
    try:
        text = Path(service.log).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _failure(service: Service, problem: str) -> ServerError:
    """Return a ServerError naming the service, the problem and the end of its log."""
    return ServerError(f"{service.name} {problem}; log {service.log}:\n{log_tail(service)}")


def http_ok(url: str) -> bool:
    """Return True when GET `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_until_healthy(checks: Mapping[Service, str], timeout: float) -> dict[str, float]:
    """Poll each service's health URL until it answers 200; return seconds from now to healthy, per name.

    Raises ServerError as soon as a service exits, or when one is not healthy within `timeout`.
    """
    started = time.monotonic()
    pending = dict(checks)
    healthy: dict[str, float] = {}
    while pending:
        for service, url in list(pending.items()):
            if http_ok(url):
                healthy[service.name] = time.monotonic() - started
                del pending[service]
            elif not is_alive(service.pid):
                raise _failure(service, "exited while starting")
        if pending and time.monotonic() - started > timeout:
            raise _failure(next(iter(pending)), f"not healthy after {timeout:.0f} s")
        time.sleep(0.25)
    return healthy


SERVING_MESSAGE = "deployments are being served"


def _deployment_count(prefect_api_url: str) -> int:
    """Return how many deployments the Prefect API knows (0 when it does not answer)."""
    request = urllib.request.Request(
        f"{prefect_api_url}/deployments/count", data=b"{}", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return int(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return 0


def wait_for_deployments(service: Service, prefect_api_url: str, timeout: float) -> float:
    """Wait until the serve process says it serves its deployments; return the seconds waited.

    Falls back to "the API has deployments and their number held for 5 s" if the message ever changes.
    """
    started = time.monotonic()
    seen, steady_since = 0, started
    while time.monotonic() - started < timeout:
        if SERVING_MESSAGE in log_tail(service, lines=200):
            return time.monotonic() - started
        count = _deployment_count(prefect_api_url)
        if count != seen:
            seen, steady_since = count, time.monotonic()
        elif count > 0 and time.monotonic() - steady_since > 5:
            return time.monotonic() - started
        if not is_alive(service.pid):
            raise _failure(service, "exited while starting")
        time.sleep(0.5)
    raise _failure(service, f"registered no deployment in {timeout:.0f} s")


def register_to_pool(
    layout: StoreLayout, environment: dict[str, str], work_pool: str, timeout: float
) -> float:
    """Register the deployments to `work_pool` (one process, logged to logs/register.log); return seconds."""
    started = time.monotonic()
    layout.logs.mkdir(parents=True, exist_ok=True)
    log_path = layout.logs / "register.log"
    with log_path.open("wb") as log:
        try:
            finished = subprocess.run(
                register_command(work_pool),
                env=environment,
                cwd=layout.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            finished = None
    if finished is None or finished.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        problem = "timed out" if finished is None else f"failed (exit {finished.returncode})"
        raise ServerError(
            f"registering the deployments to work pool {work_pool!r} {problem}; log {log_path}:\n{tail}"
        )
    return time.monotonic() - started


def _online_workers(prefect_api_url: str, work_pool: str) -> int:
    """Return how many workers of `work_pool` the Prefect API reports online (0 when it does not answer)."""
    request = urllib.request.Request(
        f"{prefect_api_url}/work_pools/{work_pool}/workers/filter",
        data=b"{}",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return sum(worker.get("status") == "ONLINE" for worker in json.loads(response.read()))
    except (urllib.error.URLError, OSError, ValueError):
        return 0


def wait_for_worker(service: Service, prefect_api_url: str, work_pool: str, timeout: float) -> float:
    """Wait until the Prefect API lists a worker of `work_pool` as online; return the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if _online_workers(prefect_api_url, work_pool) > 0:
            return time.monotonic() - started
        if not is_alive(service.pid):
            raise _failure(service, "exited while starting")
        time.sleep(0.5)
    raise _failure(service, f"did not report to work pool {work_pool!r} in {timeout:.0f} s")


def descendants(pid: int) -> list[int]:
    """Return the pids of every process below `pid` (read from /proc; empty where there is none)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def _signal_all(pids: Sequence[int], sig: signal.Signals) -> None:
    """Send `sig` to the process group of each pid and to the pid itself, ignoring ones already gone."""
    own_group = os.getpgrp()
    for pid in pids:
        try:
            group = os.getpgid(pid)
            if group != own_group:
                os.killpg(group, sig)
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def stop_process_tree(pid: int, timeout: float = 15.0) -> bool:
    """Terminate a process, its group and every descendant; SIGKILL what is left after `timeout`.

    Returns True when everything ended on SIGTERM, False when SIGKILL was needed.
    """
    tree = [pid, *descendants(pid)]
    _signal_all(tree, signal.SIGTERM)
    if _wait_gone(tree, timeout):
        return True
    left = [p for p in tree if is_alive(p)]
    _signal_all([*left, *(child for p in left for child in descendants(p))], signal.SIGKILL)
    _wait_gone(left, 5.0)
    return False


def _wait_gone(pids: Sequence[int], timeout: float) -> bool:
    """Wait up to `timeout` seconds for every pid to end; return True when all have."""
    deadline = time.monotonic() + timeout
    while any(is_alive(p) for p in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def stop_services(services: Sequence[Service], timeout: float = 15.0) -> None:
    """Stop services in reverse start order (the serve process before the servers it talks to)."""
    for service in reversed(services):
        if is_same_process(service):
            stop_process_tree(service.pid, timeout)


@dataclass(frozen=True)
class Stack:
    """The started services and the URLs a person or a test needs."""

    services: list[Service]
    prefect_url: str
    mlflow_url: str
    startup_seconds: dict[str, float]
    work_pool: str | None = None

    @property
    def prefect_api_url(self) -> str:
        """The Prefect REST API (what PREFECT_API_URL should be)."""
        return f"{self.prefect_url}/api"


def _check_ports_free(host: str, ports: Sequence[int]) -> None:
    """Fail before starting anything when a port is already taken."""
    taken = [port for port in ports if is_listening(port, host)]
    if taken:
        raise ServerError(
            f"port(s) {', '.join(map(str, taken))} on {host} already in use "
            "(is `explorec up` already running? `explorec down` stops it)"
        )


def start_stack(
    home: Path | None = None,
    *,
    host: str = HOST,
    prefect_port: int = PREFECT_PORT,
    mlflow_port: int = MLFLOW_PORT,
    serve: bool = True,
    work_pool: str | None = None,
    timeout: float = 180.0,
) -> Stack:
    """Start the Prefect and MLflow servers (in parallel), wait until healthy, then the serve process.

    With `work_pool`, the deployments are registered to that process work pool instead and a `prefect
    worker` polling it takes the serve process's place (more workers may poll it from other machines).
    On any failure everything already started is stopped before the error is raised.
    """
    layout = store_layout(home)
    _check_ports_free(host, [prefect_port, mlflow_port])
    for folder in (layout.prefect_home, layout.artifacts):
        folder.mkdir(parents=True, exist_ok=True)
    prefect_url, mlflow_url = f"http://{host}:{prefect_port}", f"http://{host}:{mlflow_port}"
    services: list[Service] = []
    timings: dict[str, float] = {}
    started = time.monotonic()
    try:
        with prefect_database_lock(layout):  # no command's temporary server migrates the database meanwhile
            prefect = start_service(
                "prefect-server",
                prefect_server_command(prefect_port, host),
                prefect_server_environment(layout, prefect_port, host),
                layout,
                prefect_url,
            )
            services.append(prefect)
            mlflow = start_service(
                "mlflow-server",
                mlflow_server_command(layout, mlflow_port, host),
                mlflow_server_environment(),
                layout,
                mlflow_url,
            )
            services.append(mlflow)
            timings.update(wait_until_healthy({prefect: f"{prefect_url}/api/health"}, timeout))
        waited = time.monotonic() - started  # both started together: report each from the start
        mlflow_ready = wait_until_healthy({mlflow: f"{mlflow_url}/health"}, max(timeout - waited, 1.0))
        timings.update({name: seconds + waited for name, seconds in mlflow_ready.items()})
        api_url = f"{prefect_url}/api"
        environment = serve_environment(layout, prefect_url, mlflow_url)
        if serve and work_pool:
            timings["register"] = register_to_pool(layout, environment, work_pool, timeout)
            worker = start_service("worker", worker_command(work_pool), environment, layout, None)
            services.append(worker)
            timings["worker"] = wait_for_worker(worker, api_url, work_pool, timeout)
        elif serve:
            serving = start_service("serve", serve_command(), environment, layout, None)
            services.append(serving)
            timings["serve"] = wait_for_deployments(serving, api_url, timeout)
    except BaseException:
        stop_services(services)
        raise
    return Stack(services, prefect_url, mlflow_url, timings, work_pool if serve else None)


def write_state(layout: StoreLayout, stack: Stack) -> Path:
    """Record the started services in mlruns/servers.json (for `explorec down`)."""
    state = {
        "prefect_url": stack.prefect_url,
        "mlflow_url": stack.mlflow_url,
        "services": [asdict(service) for service in stack.services],
    }
    layout.state_file.write_text(json.dumps(state, indent=2) + "\n")
    return layout.state_file


def read_state(layout: StoreLayout) -> list[Service]:
    """Return the services recorded in mlruns/servers.json (empty when there is no such file)."""
    if not layout.state_file.is_file():
        return []
    state = json.loads(layout.state_file.read_text())
    return [Service(**service) for service in state.get("services", [])]


def _print_urls(stack: Stack) -> None:
    """Print where the UIs are and how long each service took to start."""
    started = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in stack.startup_seconds.items())
    print(f"Prefect UI:  {stack.prefect_url}")
    print(f"MLflow UI:   {stack.mlflow_url}")
    if stack.work_pool:
        print(
            f"work pool:   {stack.work_pool} (one worker here; on another machine: "
            f"PREFECT_API_URL={stack.prefect_api_url} prefect worker start --pool {stack.work_pool})"
        )
    print(f"started: {started}", flush=True)


def _wait_for_exit(stack: Stack) -> int:
    """Block until Ctrl-C or SIGTERM (0) or until a service dies on its own (1)."""

    def on_terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_terminate)
    try:
        # said only once a Ctrl-C is caught here: one sent right after the line must still stop cleanly
        print("press Ctrl-C to stop", flush=True)
        while True:
            dead = [service for service in stack.services if not is_alive(service.pid)]
            if dead:
                print(f"{dead[0].name} stopped unexpectedly; log {dead[0].log}:\n{log_tail(dead[0])}")
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def up(
    home: Path | None = None,
    *,
    host: str = HOST,
    prefect_port: int = PREFECT_PORT,
    mlflow_port: int = MLFLOW_PORT,
    serve: bool = True,
    work_pool: str | None = None,
    detach: bool = False,
    timeout: float = 180.0,
) -> int:
    """Start both servers and the serve process (or a worker of `work_pool`), print the URLs; stay until
    Ctrl-C unless `detach`.

    Returns an exit code: 0 after a clean stop (or once started with `detach`), 1 when a service died,
    130 when interrupted while starting. Raises ServerError when a port is taken or a server fails to start.
    """
    layout = store_layout(home)
    if any(is_same_process(service) for service in read_state(layout)):
        raise ServerError(f"services from {layout.state_file} are still running; `explorec down` stops them")
    ports = {"prefect_port": prefect_port, "mlflow_port": mlflow_port}
    try:
        stack = start_stack(
            layout.home, host=host, **ports, serve=serve, work_pool=work_pool, timeout=timeout
        )
    except KeyboardInterrupt:
        print("interrupted while starting; everything started so far was stopped")
        return 130
    write_state(layout, stack)
    _print_urls(stack)
    if detach:
        print(f"in the background (pids in {layout.state_file}); `explorec down` stops them", flush=True)
        return 0
    try:
        code = _wait_for_exit(stack)
    finally:
        print("stopping ...", flush=True)
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan anything
        try:
            stop_services(stack.services)
            layout.state_file.unlink(missing_ok=True)
        finally:
            signal.signal(signal.SIGINT, previous)
        print("stopped", flush=True)
    return code


def down(home: Path | None = None, *, timeout: float = 15.0) -> int:
    """Stop the services that `explorec up --detach` recorded in mlruns/servers.json; returns 0."""
    layout = store_layout(home)
    services = read_state(layout)
    if not services:
        print(f"nothing to stop ({layout.state_file} not found)")
        return 0
    stop_services(services, timeout)
    layout.state_file.unlink(missing_ok=True)
    print("stopped " + ", ".join(f"{service.name} (pid {service.pid})" for service in services))
    return 0
