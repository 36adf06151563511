"""A command's watchdog: when the command dies (kill -9 included), stop the processes it left behind.

Flow commands run on Prefect's ephemeral API, a server subprocess that the command stops when it ends
normally; a command killed with SIGKILL cannot, and the server lived on, orphaned. The CLI starts this
watchdog (`python -m explorec.pipeline.watchdog <pid> <start time>`, in its own session so that Ctrl-C in the
terminal reaches only the command). It snapshots the command's descendants every `POLL_S` seconds, each
with its kernel start time; once the command is gone it sends SIGTERM, then after `GRACE_S` SIGKILL, to the
snapshot's processes that still run with the same start time: only the command's own descendants, never a
process that reused one of their pids, never a process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from explorec.tracking.owner import is_same_process, start_time

POLL_S = 0.5
GRACE_S = 5.0


def children(pid: int) -> list[int]:
    """Return the direct children of `pid` (from /proc/<pid>/task/*/children; empty when it is gone)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Return every process below `pid`, walking /proc's children lists (cheap: no scan of all of /proc)."""
    found, queue = [], [pid]
    while queue:
        for child in children(queue.pop()):
            found.append(child)
            queue.append(child)
    return found


def snapshot(pid: int, known: dict[int, str | None]) -> dict[int, str | None]:
    """Return `known` with the new descendants of `pid` added and the ones that ended dropped."""
    me = os.getpid()
    current = dict(known)
    for child in descendants(pid):
        if child != me and child not in current:
            current[child] = start_time(child)
    return {child: started for child, started in current.items() if is_same_process(child, started)}


def stop(processes: dict[int, str | None], grace_s: float = GRACE_S) -> list[int]:
    """SIGTERM, then SIGKILL after `grace_s`, each process still running with its start time; return pids."""
    left = {pid: started for pid, started in processes.items() if started and is_same_process(pid, started)}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, started in left.items():
            if is_same_process(pid, started):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(is_same_process(p, s) for p, s in left.items()):
            time.sleep(0.05)
    return list(left)


def watch(pid: int, started: str | None, poll_s: float = POLL_S) -> list[int]:
    """Follow `pid` until it is gone, then stop what it left behind; return the pids that were stopped."""
    known: dict[int, str | None] = {}
    while is_same_process(pid, started):
        known = snapshot(pid, known)
        time.sleep(poll_s)
    return stop(known)


def start_watchdog() -> subprocess.Popen[bytes] | None:
    """Start the watchdog of this process (its own session, no terminal); None where /proc is missing."""
    me = os.getpid()
    started = start_time(me)
    if started is None:
        return None
    return subprocess.Popen(
        [sys.executable, "-m", "explorec.pipeline.watchdog", str(me), started],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point: `python -m explorec.pipeline.watchdog <pid> <start time>`."""
    args = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the command's end stops the watch
    watch(int(args[0]), args[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
