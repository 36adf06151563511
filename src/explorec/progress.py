"""What a long run prints on stderr: progress lines for every long phase, and quiet libraries.

One home for both (docs/design.md §8 "long work shows progress"). `Progress` reports a phase (text
encoding, training, simulation, tuning trials) as plain timestamped lines on stderr with the share done,
the time elapsed and an ETA: a line when the phase starts, at most one every `interval_s` seconds while it
runs (`EXPLOREC_PROGRESS_INTERVAL_S`, default 30) and one when it ends. Lines, not carriage-return bars, so a
log that is not a terminal (a CI log, a Prefect worker, `2> run.log`) shows them as they happen.

`quiet_libraries()` drops what libraries print that tells a user nothing (deprecation notices of other
packages, MLflow's CloudPickle caution and "Downloading artifacts" bars, Hugging Face loading bars);
`single_lightning_output()` makes each Lightning log line print once. This module sits in the lowest layer
(beside `errors`) so the encoder, the trainer, the simulator and the tuner can all use it; it imports only
the standard library.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable

LOGGER_NAME = "explorec.progress"
INTERVAL_ENV = "EXPLOREC_PROGRESS_INTERVAL_S"
DEFAULT_INTERVAL_S = 20.0
STYLE_ENV = "EXPLOREC_PROGRESS"
"""`lines` (progress lines), `bar` (Lightning's bar) or `off`; unset: the bar on a terminal, else lines."""

LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")
QUIET_ENVIRONMENT = {
    # MLflow draws a tqdm bar for every artifact it downloads or uploads (six per packaged model)
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # transformers' "Loading weights" bar when the text encoder loads (read when transformers is imported)
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}
QUIET_MESSAGES: dict[str, tuple[str, ...]] = {
    # explorec logs its own pyfunc on purpose; the caution and the signature check say nothing to a user
    "mlflow.pyfunc": ("Passing a Python object as `python_model`", "Validating input example"),
}
"""Logger name → message prefixes dropped from it."""


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes to whatever `sys.stderr` is when a line is emitted."""

    @property  # type: ignore[override]
    def stream(self) -> object:
        """The current standard error."""
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        """Ignore the stream the base class sets: stderr is looked up at emit time."""


def progress_logger() -> logging.Logger:
    """Return the `explorec.progress` logger, which writes timestamped lines to stderr exactly once."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(handler, _CurrentStderr) for handler in logger.handlers):
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("%(asctime)s | progress | %(message)s", "%Y-%m-%d %H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # Prefect's root console handler would print each line a second time
    return logger


def interval_s() -> float:
    """Return the seconds between two progress lines of a running phase (EXPLOREC_PROGRESS_INTERVAL_S)."""
    try:
        value = float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S
    return value if math.isfinite(value) and value >= 0 else DEFAULT_INTERVAL_S


def duration(seconds: float) -> str:
    """Format seconds as `m:ss` or `h:mm:ss`."""
    whole = max(round(seconds), 0)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """One long phase's progress lines: a start line, throttled running lines, a closing line."""

    def __init__(
        self,
        phase: str,
        total: int | None,
        *,
        unit: str = "steps",
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        enabled: bool = True,
    ) -> None:
        self.phase, self.total, self.unit = phase, total, unit
        self.interval = interval_s() if interval is None else interval
        self.clock, self.enabled = clock, enabled
        self.done = 0
        self.started = self.last_line = clock()
        self.lines: list[str] = []  # every line emitted, for the caller (and tests) to read back

    def start(self, detail: str = "") -> None:
        """Say that the phase starts, with its size."""
        size = f"{self.total} {self.unit}" if self.total is not None else f"{self.unit} (count unknown)"
        self._emit(f"{self.phase}: started, {size}" + (f"; {detail}" if detail else ""))

    def advance(self, steps: int = 1, detail: str = "") -> bool:
        """Count `steps` more done; print a line when `interval` has passed since the last one."""
        return self.update(self.done + steps, detail)

    def update(self, done: int, detail: str = "") -> bool:
        """Set the count done; print a line when `interval` has passed since the last one."""
        self.done = done
        return self.tick(detail)

    def tick(self, detail: str = "") -> bool:
        """Print the current state if `interval` has passed since the last line; return whether it did."""
        if self.clock() - self.last_line < self.interval:
            return False
        self._emit(self.status(detail))
        return True

    def status(self, detail: str = "") -> str:
        """Return the running line: count, share done, elapsed time and ETA, then `detail`."""
        elapsed = self.clock() - self.started
        parts = [f"{self.done}/{self.total} {self.unit}" if self.total else f"{self.done} {self.unit}"]
        if self.total:
            parts.append(f"{100.0 * self.done / self.total:.0f}%")
        parts.append(f"elapsed {duration(elapsed)}")
        if self.total and 0 < self.done < self.total:
            parts.append(f"ETA {duration(elapsed / self.done * (self.total - self.done))}")
        return f"{self.phase}: " + ", ".join(parts) + (f" - {detail}" if detail else "")

    def finish(self, detail: str = "") -> None:
        """Say that the phase ended, how much it did and how long it took."""
        count = f"{self.done} {self.unit}" if self.total is None else f"{self.done}/{self.total} {self.unit}"
        elapsed = duration(self.clock() - self.started)
        self._emit(f"{self.phase}: done, {count} in {elapsed}" + (f" - {detail}" if detail else ""))

    def _emit(self, line: str) -> None:
        """Write one line to the progress logger and remember it."""
        self.last_line = self.clock()
        self.lines.append(line)
        if self.enabled:
            progress_logger().info(line)


def progress_style() -> str:
    """Return `bar` (an interactive terminal), `lines` (a log) or `off`, EXPLOREC_PROGRESS first."""
    chosen = os.environ.get(STYLE_ENV, "").strip().lower()
    if chosen in ("bar", "lines", "off"):
        return chosen
    interactive = sys.stderr.isatty() and sys.stdout.isatty()
    return "bar" if interactive else "lines"


class _DropMessages(logging.Filter):
    """Drop records whose message starts with one of the given prefixes."""

    def __init__(self, prefixes: Iterable[str]) -> None:
        super().__init__()
        self.prefixes = tuple(prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record but those starting with a dropped prefix."""
        return not str(record.getMessage()).startswith(self.prefixes)


def quiet_libraries() -> None:
    """Filter library output that says nothing to a user; idempotent, and explorec's own warnings stay."""
    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    not_ours = r"(?!explorec\b|flows\b)"  # the module a warning is attributed to: any but explorec's
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=not_ours)
    # Lightning: a data set with fewer batches than log_every_n_steps; explorec logs epoch-level curves
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval")
    for name, prefixes in QUIET_MESSAGES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(existing, _DropMessages) for existing in logger.filters):
            logger.addFilter(_DropMessages(prefixes))


def single_lightning_output() -> None:
    """Make each Lightning log line print once: through the root handlers (Prefect's) when there are any.

    Lightning adds its own stderr handler when imported before logging is configured; once Prefect has
    given the root logger a console handler, the same record printed twice (plain and Prefect-formatted).
    Without root handlers Lightning's own handler is the only printer and stays.
    """
    if not logging.getLogger().handlers:
        return
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:  # Lightning's own; never a file or API handler
                logger.removeHandler(handler)
        logger.propagate = True
