"""One line, with the thing to do, for an error a library raised on a path a person can reach.

MLflow (a run id that does not exist, a store it cannot use), SQLAlchemy (a damaged or locked SQLite file),
Lightning and torch (a trainer setting this machine cannot honour, memory), Optuna (a study or storage), and
the operating system (a folder that cannot be written) fail with their own exception types and multi-line
messages. `describe_failure` turns any of them into an `ExternalError` whose text is one line: what failed,
the library's own first line, and which setting or command fixes it. Exception types are recognised by the
module that defines them, so nothing here imports those libraries.
"""

from __future__ import annotations

from collections.abc import Iterator

from explorec.errors import ExternalError

MAX_DETAIL_CHARACTERS = 300
DEBUG_HINT = "rerun with --debug for the traceback"


def _chain(error: BaseException) -> Iterator[BaseException]:
    """Yield `error` and the exceptions it was raised from or while handling, outermost first."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


LIBRARIES = ("mlflow", "sqlalchemy", "lightning", "pytorch_lightning", "torch", "optuna")


def _raised_in(error: BaseException) -> str:
    """Return the top-level package of the code that raised `error` (its innermost traceback frame)."""
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return "" if frame is None else str(frame.tb_frame.f_globals.get("__name__", "")).split(".")[0]


def _family(error: BaseException) -> str:
    """Return the library an error comes from: the package defining its type, else the one raising it.

    torch and Lightning raise plain RuntimeErrors (a checkpoint that does not fit the model, a metric
    that was never logged), so where it was raised counts too. An OSError from anywhere is 'builtins'.
    """
    for cls in type(error).__mro__:
        package = cls.__module__.split(".")[0]
        if package in LIBRARIES:
            return package
    raised = _raised_in(error)
    if raised in LIBRARIES:
        return raised
    return "builtins" if isinstance(error, OSError) else ""


def _detail(error: BaseException) -> str:
    """Return the first non-empty line of the error's message, cut to MAX_DETAIL_CHARACTERS."""
    message = getattr(error, "message", None) or str(error)
    line = next((part.strip() for part in str(message).splitlines() if part.strip()), type(error).__name__)
    if len(line) > MAX_DETAIL_CHARACTERS:
        line = line[:MAX_DETAIL_CHARACTERS] + "..."
    return line


def _mlflow_advice(error: BaseException) -> str:
    """Return what to do about an MlflowException, by its error code."""
    code = str(getattr(error, "error_code", ""))
    if code == "RESOURCE_DOES_NOT_EXIST":
        return "check the run id, model name or version (`mlflow ui` lists them) and tracking.tracking_uri"
    if code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST"):
        return "check the value named above"
    return "check tracking.tracking_uri (and that the MLflow server it names is running)"


ADVICE = {
    "sqlalchemy": (
        "the MLflow store's database could not be used",
        "check tracking.tracking_uri: its folder must be writable and the file an MLflow SQLite store "
        "(move a damaged mlruns/mlflow.db aside); 'database is locked' means another process holds it",
    ),
    "lightning": (
        "Lightning refused the training setup",
        "check trainer.* (accelerator, devices, strategy, precision) against this machine",
    ),
    "pytorch_lightning": (
        "Lightning refused the training setup",
        "check trainer.* (accelerator, devices, strategy, precision) against this machine",
    ),
    "torch": (
        "torch failed",
        "a checkpoint needs the model.* settings it was trained with (pass the run's overrides); on "
        "out-of-memory lower trainer.batch_size or model.embedding_dim; check trainer.accelerator",
    ),
    "optuna": ("Optuna failed", "check tune.storage and tune.study_name"),
    "builtins": ("a file or folder could not be used", "check the path exists, is writable and has space"),
}
"""Per library: what failed, and what to do about it."""


def describe_failure(error: BaseException) -> ExternalError:
    """Return one line for a library's error: what failed, its first line, what to do, and --debug."""
    for link in _chain(error):
        family = _family(link)
        if family == "mlflow":
            return ExternalError(f"MLflow: {_detail(link)}; {_mlflow_advice(link)} ({DEBUG_HINT})")
        if family in ADVICE:
            what, advice = ADVICE[family]
            return ExternalError(f"{what}: {_detail(link)}; {advice} ({DEBUG_HINT})")
    name = type(error).__name__
    return ExternalError(f"unexpected {name}: {_detail(error)} ({DEBUG_HINT}; it may be a bug)")
