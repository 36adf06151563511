"""Cross-process exclusive locks on files (fcntl.flock): the OS releases them when the holder dies."""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive_lock(
    path: Path, timeout_s: float, on_timeout: Callable[[Path, float], Exception]
) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if needed), waiting up to `timeout_s` seconds.

    Raises `on_timeout(path, timeout_s)` when another holder keeps it longer. Each call opens its own file
    handle, so threads of one process exclude each other too.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with path.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise on_timeout(path, timeout_s) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
