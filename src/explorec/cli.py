"""The `explorec` command: runs a Prefect flow with Hydra overrides and prints a summary.

Errors that explorec understands (bad config, missing or invalid data) print one line and exit non-zero; so
do the errors of the libraries underneath (MLflow, SQLAlchemy, torch...), with what to do (exit code 6,
`explorec.pipeline.failures`). `--debug` (or EXPLOREC_DEBUG=1) shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from explorec.errors import ExplorecError
from explorec.progress import quiet_libraries


@dataclass(frozen=True)
class Command:
    """One sub-command: the flow it runs and how its summary is shown to a person."""

    help: str
    render: str
    flow: str | None = None
    call: str | None = None
    up_to_date: str | None = None
    options: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = ()


FLOW_COMMANDS: dict[str, str] = {
    "preprocess": "read, validate and split a data set into model-ready Parquet tables",
    "train": "train and evaluate the two-tower model, tracked as an MLflow run",
    "benchmark": "compare the baselines and the two-tower (encoders minilm and none) on one split",
    "pipeline": "the whole system: preprocess, encode, train (or tune), simulate, register, gate, promote",
    "simulate": "judge the exploration policies in the seeded interactive simulator",
    "study": "encoder ladder x policy x rate x world x ground truth in the simulator: what text towers buy",
    "replay": "replay sessions of a training run's served model with feedback (a click = a held-out item)",
    "tune": "Optuna search over embedding size and exploration rate; every trial a nested MLflow run",
    "loop": "rounds of serve, simulated clicks, log, off-policy judgement, retrain, gate, promote",
}
"""Sub-command → its help; each runs `flows.<name>:<name>_flow` and shows `pipeline.report:<name>_text`."""

GUARDED_COMMANDS = ("pipeline", "register", "promote", "evaluate-logs", "serve")
"""Commands that read or move the champion: the champion guard runs first (`explorec.registry.guard`)."""

UP_TO_DATE_CHECKS: dict[str, str] = {"preprocess": "explorec.cli:cached_preprocess_summary"}
"""Flow commands that answer from a matching cached output, without starting Prefect, unless --force-flow."""


def flow_command(name: str, help: str) -> Command:
    """Return the sub-command that runs flow `name` and renders its summary with `<name>_text`."""
    return Command(
        help=help,
        flow=f"flows.{name}:{name}_flow",
        render=f"explorec.pipeline.report:{name}_text",
        up_to_date=UP_TO_DATE_CHECKS.get(name),
    )


COMMANDS: dict[str, Command] = {
    **{name: flow_command(name, help) for name, help in FLOW_COMMANDS.items()},
    "register": Command(
        help="package a training run's recommender, register it and record the gate decision",
        call="explorec.cli:register_command",
        render="explorec.pipeline.report:registration_text",
        options=((("--run-id",), {"help": "training run to register (default: train a new one now)"}),),
    ),
    "evaluate-logs": Command(
        help="estimate a registered version's clicks per slot on the service's logged traffic (IPS/SNIPS/DR)",
        call="explorec.cli:evaluate_logs_command",
        render="explorec.pipeline.report:log_evaluation_text",
        options=((("--candidate",), {"required": True, "help": "registered version to evaluate"}),),
    ),
    "export-logs": Command(
        help="write a base data set plus the service's logged clicks and added items as files to train on",
        call="explorec.cli:export_logs_command",
        render="explorec.pipeline.report:export_logs_text",
        options=(
            (("--base",), {"default": "ml100k", "help": "the data set the served model was trained on"}),
            (("--out",), {"default": "mlruns/logged-data", "help": "output folder"}),
        ),
    ),
    "promote": Command(
        help="move the champion alias to a version (default: the challenger), re-checking the gates",
        call="explorec.cli:promote_command",
        render="explorec.pipeline.report:promotion_text",
        options=(
            (("--version",), {"help": "registered version to promote (default: the challenger)"}),
            (("--force",), {"action": "store_true", "help": "skip the gates; needs --reason"}),
            (("--reason",), {"help": "why a forced promotion is made (recorded as a tag)"}),
            (("--dry-run",), {"action": "store_true", "help": "print the decision; touch nothing"}),
        ),
    ),
}

OFFLINE_ENVIRONMENT = {
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # seconds Prefect waits for its ephemeral API to start; its 20 s default is too short on a busy machine
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    # progress lines (explorec.progress) also go to the flow run's log in the Prefect UI; outside a flow
    # run (a worker process, a command without a flow) they stay on stderr without a warning
    "PREFECT_LOGGING_EXTRA_LOGGERS": "explorec.progress",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}


def _load(reference: str) -> Callable[..., Any]:
    """Import `module:attribute` lazily, so `explorec --help` does not import Prefect or torch."""
    module_name, attribute = reference.split(":")
    return getattr(importlib.import_module(module_name), attribute)


def _default_ports() -> tuple[int, int]:
    """Return `explorec up`'s default (Prefect, MLflow) ports."""
    from explorec.pipeline.servers import default_ports

    return default_ports()


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser: one sub-command per flow, each taking Hydra overrides."""
    parser = argparse.ArgumentParser(prog="explorec", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        child = sub.add_parser(name, help=command.help, description=command.help)
        child.add_argument(
            "overrides", nargs="*", help="Hydra overrides, e.g. data=ml100k split=random_ratio"
        )
        child.add_argument("--json", action="store_true", help="print the summary as JSON on the last line")
        child.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
        for flags, settings in command.options:
            child.add_argument(*flags, **settings)
        if command.up_to_date:
            child.add_argument(
                "--force-flow",
                action="store_true",
                help="start the Prefect flow even when a matching cached output exists",
            )
    up = sub.add_parser("up", help="start the Prefect and MLflow servers and serve every flow (Ctrl-C stops)")
    up.add_argument("--detach", action="store_true", help="start in the background; `explorec down` stops")
    prefect_port, mlflow_port = _default_ports()
    up.add_argument(
        "--prefect-port",
        type=int,
        default=prefect_port,
        help="Prefect server port on 127.0.0.1 (default: EXPLOREC_PREFECT_PORT or 4200)",
    )
    up.add_argument(
        "--mlflow-port",
        type=int,
        default=mlflow_port,
        help="MLflow server port on 127.0.0.1 (default: EXPLOREC_MLFLOW_PORT or 5000)",
    )
    up.add_argument("--no-serve", action="store_true", help="start the servers without serving the flows")
    up.add_argument(
        "--work-pool",
        metavar="NAME",
        help="register the deployments to this process work pool and start a worker polling it, instead of "
        "serving them from one process (workers on other machines can poll the same pool)",
    )
    up.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    serve = sub.add_parser(
        "serve", help="serve the registry's champion over HTTP, logging every slate it serves (Ctrl-C stops)"
    )
    serve.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. service.port=8001")
    serve.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    down = sub.add_parser("down", help="stop what `explorec up --detach` started")
    down.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    return parser


def _servers(args: argparse.Namespace) -> int:
    """Run `explorec up` or `explorec down`."""
    from explorec.pipeline import servers

    if args.command == "down":
        return servers.down()
    return servers.up(
        prefect_port=args.prefect_port,
        mlflow_port=args.mlflow_port,
        serve=not args.no_serve,
        work_pool=args.work_pool,
        detach=args.detach,
    )


def _guard(cfg: Any) -> None:
    """Run the champion guard; say on stderr when it restored or recorded a move made around the gates."""
    from explorec.pipeline.guard import guard_registry

    outcome = guard_registry(cfg)
    if outcome is not None and outcome.message:
        print(f"explorec: warning: {outcome.message}", file=sys.stderr)


def _serve(overrides: Sequence[str]) -> int:
    """Run `explorec serve` until interrupted."""
    from explorec.pipeline.config import load_config
    from explorec.pipeline.service import serve

    cfg = load_config(overrides)
    _guard(cfg)
    return serve(cfg)


class DropFailureReports(logging.Filter):
    """Drop Prefect's reports of a failed run (ERROR lines, tracebacks, "Finished in state Failed").

    The CLI prints the failure itself, once, as `explorec <cmd>: error: ...`; Prefect would repeat it two or
    three times. The run's Failed state, with its message, still reaches the Prefect API.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep a record unless it reports the failure of a task or flow run."""
        message = record.getMessage()
        finished_badly = message.startswith("Finished in state ") and not message.startswith(
            ("Finished in state Completed", "Finished in state Cached")
        )
        return not (record.levelno >= logging.ERROR or record.exc_info or finished_badly)


def _quiet_prefect_tracebacks() -> None:
    """Keep Prefect's failed-run reports off the console; the CLI prints one clear line instead."""
    for name in ("prefect.flow_runs", "prefect.task_runs", "prefect.engine"):
        logging.getLogger(name).addFilter(DropFailureReports())


def cached_preprocess_summary(cfg: Any) -> dict[str, Any] | None:
    """Return the summary of a matching earlier preprocess output, or None when there is work to do."""
    from explorec.data.preprocess import find_cached

    cached = find_cached(cfg)
    if cached is None:
        return None
    return {**cached.summary(), "dataset": cfg.data.name, "split": cfg.split.name, "orchestrated": False}


def register_command(cfg: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Register `--run-id` (or a run trained now) and record its gate decision."""
    from explorec.pipeline.registration import package_run, register_and_gate

    run_id = args.run_id
    if run_id is None:
        ensure_prefect_api()
        from flows.train import train_flow

        run_id = train_flow(overrides=list(args.overrides))["run_id"]
    package_run(cfg, run_id)
    return register_and_gate(cfg, run_id).to_summary()


def evaluate_logs_command(cfg: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate --candidate on the impression log and tag the version with the estimates."""
    from explorec.pipeline.service import evaluate_logs

    return evaluate_logs(cfg, str(args.candidate))


def export_logs_command(cfg: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Export the base data set with the logged clicks; the summary names the overrides to train on it."""
    from pathlib import Path

    from explorec.config import resolve
    from explorec.pipeline.log_data import export_logged_data

    exported = export_logged_data(cfg, base=args.base, out=Path(resolve(args.out)))
    return {**dataclasses.asdict(exported), "overrides": exported.overrides()}


def promote_command(cfg: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Promote a version to champion (gates re-checked unless --force with --reason)."""
    from explorec.errors import ExplorecError
    from explorec.pipeline.registration import promote_version

    if args.force and not (args.reason or "").strip():
        raise ExplorecError('--force needs --reason "why"; the reason is recorded on the version')
    promotion = promote_version(cfg, args.version, force=args.force, reason=args.reason, dry_run=args.dry_run)
    return promotion.to_summary()


def run(
    command: str,
    overrides: Sequence[str],
    *,
    as_json: bool,
    force: bool = False,
    args: argparse.Namespace | None = None,
) -> dict[str, Any]:
    """Check the overrides, run one flow (or registry action) and print its summary; returns the summary."""
    from explorec.pipeline.config import load_config

    spec = COMMANDS[command]
    cfg = load_config(overrides)  # fail fast on a bad override, before Prefect starts; the flow loads its own
    if _other_node(command):
        summary = _load("explorec.models.train:train_as_other_node")(cfg)
        node = summary["node_rank"]
        print(json.dumps(summary) if as_json else f"node {node}: trained its share; node 0 tracks the run")
        return summary
    if command in GUARDED_COMMANDS:
        _guard(cfg)
    summary = _load(spec.up_to_date)(cfg) if spec.up_to_date and not force else None
    if summary is None and spec.call is not None:
        summary = _load(spec.call)(cfg, args)
    elif summary is None and spec.flow is not None:
        ensure_prefect_api()
        summary = _load(spec.flow)(overrides=list(overrides))
    if as_json:
        print(json.dumps(summary, default=str))
    else:
        print(_load(COMMANDS[command].render)(summary))
    return summary


def _other_node(command: str) -> bool:
    """True on a node other than node 0 of a multi-node DDP job (NODE_RANK set, not 0): `train` only trains.

    (`explorec.models.distributed.node_rank_from_environment` reads the number; this check imports no torch.)
    """
    if os.environ.get("NODE_RANK", "0").strip() in ("", "0"):
        return False
    if command != "train":
        raise ExplorecError(f"NODE_RANK > 0: only `explorec train` runs on other nodes, not {command}")
    return True


_prefect_target: Any = None
"""Where this command's flow runs go (`explorec.pipeline.prefect_home.use_prefect_home`), set by `main`."""


def use_prefect_home() -> None:
    """Point Prefect at the home's database or at its running `explorec up` server (before Prefect loads)."""
    global _prefect_target
    from explorec.pipeline.prefect_home import use_prefect_home as point_prefect

    _prefect_target = point_prefect()


def ensure_prefect_api() -> None:
    """Before a flow runs: start Prefect's temporary server on the home's database when no server runs."""
    if _prefect_target is not None:
        from explorec.pipeline.prefect_home import ensure_prefect_api as ensure

        ensure(_prefect_target)


_watchdog: Any = None
"""This process's watchdog (`explorec.pipeline.watchdog`), started once by the first command run."""


def ensure_watchdog() -> None:
    """Start the watchdog that stops this command's leftover processes (Prefect's server) if it is killed."""
    global _watchdog
    if _watchdog is None and os.environ.get("EXPLOREC_WATCHDOG", "1") != "0":
        from explorec.pipeline.watchdog import start_watchdog

        _watchdog = start_watchdog()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `explorec` console script."""
    args = build_parser().parse_args(argv)
    for key, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    quiet_libraries()  # no deprecation notices, CloudPickle cautions or artifact bars of other libraries
    if args.command not in ("up", "down"):  # `up --detach` leaves its servers running on purpose
        ensure_watchdog()
    if args.command not in ("up", "down", "serve"):
        use_prefect_home()  # one Prefect home: the runs show in `explorec up`'s UI, now or later
    debug = args.debug or os.environ.get("EXPLOREC_DEBUG") == "1"
    if not debug:
        _quiet_prefect_tracebacks()
    try:
        if args.command in ("up", "down"):
            return _servers(args)
        if args.command == "serve":
            return _serve(args.overrides)
        force = getattr(args, "force_flow", False)
        summary = run(args.command, args.overrides, as_json=args.json, force=force, args=args)
    except ExplorecError as error:
        if debug:
            raise
        print(f"explorec {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except Exception as error:  # MLflow, SQLAlchemy, torch, OS errors: one line saying what to do
        if debug:
            raise
        from explorec.pipeline.failures import describe_failure

        failure = describe_failure(error)
        print(f"explorec {args.command}: error: {failure}", file=sys.stderr)
        return failure.exit_code
    return 1 if summary.get("outcome") == "refused" else 0  # a refused promotion is a failed command


if __name__ == "__main__":
    sys.exit(main())
