"""Shared Prefect task settings: retry I/O failures only, never data or config errors."""

from __future__ import annotations

from typing import Any


def retry_on_io_error(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a failed task only when it failed with an OSError (disk, network); other errors are final."""
    try:
        state.result()
    except OSError:
        return True
    except Exception:
        return False
    return False


IO_RETRIES: dict[str, Any] = {"retries": 2, "retry_delay_seconds": 2, "retry_condition_fn": retry_on_io_error}
