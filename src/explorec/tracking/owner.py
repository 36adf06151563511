"""Who owns a run: this process's identity (host, boot, pid, kernel start time) and whether it still lives.

A pid alone is not an identity: pids are reused, and they restart at every boot. A process is named by
(host, boot id, pid, start time); it is gone when the host and boot are this machine's and no process with
that pid and that start time runs. A process on another host (or an unknown one) is never judged gone.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

OWNER_TAG_PREFIX = "explorec.owner."


def start_time(pid: int) -> str | None:
    """Return the kernel's start time of `pid` (clock ticks since boot, as text), or None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _reap(pid: int) -> None:
    """Collect the exit status of `pid` if it is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def is_alive(pid: int) -> bool:
    """Return True while `pid` runs (a zombie counts as gone)."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return True
    return fields[0] != "Z"


def is_same_process(pid: int, started: str | None) -> bool:
    """Return True when `pid` runs and is the process that had start time `started` (None: any)."""
    if not is_alive(pid):
        return False
    return started is None or start_time(pid) == started


@cache
def boot_id() -> str:
    """Return this boot's id (Linux), or 'unknown' where the kernel does not say."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


@dataclass(frozen=True)
class ProcessOwner:
    """A process named so that a reused pid or a reboot is not mistaken for it."""

    host: str
    boot_id: str
    pid: int
    start_time: str | None

    def tags(self) -> dict[str, str]:
        """Return the owner as run tags `explorec.owner.*`."""
        return {
            f"{OWNER_TAG_PREFIX}host": self.host,
            f"{OWNER_TAG_PREFIX}boot_id": self.boot_id,
            f"{OWNER_TAG_PREFIX}pid": str(self.pid),
            f"{OWNER_TAG_PREFIX}start_time": self.start_time or "unknown",
        }

    def describe(self) -> str:
        """Return 'pid N on HOST (started T)' for messages."""
        return f"pid {self.pid} on {self.host} (started {self.start_time or 'unknown'})"

    def is_gone(self) -> bool:
        """Whether this owner ran on this machine in this boot and no longer runs (unknown: False)."""
        if self.host != socket.gethostname():
            return False
        if self.boot_id != boot_id():
            return self.boot_id != "unknown" and boot_id() != "unknown"  # rebooted since: gone
        return not is_same_process(self.pid, self.start_time)


def current_owner() -> ProcessOwner:
    """Return this process as an owner."""
    return ProcessOwner(socket.gethostname(), boot_id(), os.getpid(), start_time(os.getpid()))


def owner_tags() -> dict[str, str]:
    """Return the tags that name this process as the owner of a run or a logged model."""
    return current_owner().tags()


def owner_from_tags(tags: Mapping[str, str]) -> ProcessOwner | None:
    """Return the owner recorded in tags, or None when there is none (or it cannot be read)."""
    try:
        started = tags[f"{OWNER_TAG_PREFIX}start_time"]
        return ProcessOwner(
            host=tags[f"{OWNER_TAG_PREFIX}host"],
            boot_id=tags.get(f"{OWNER_TAG_PREFIX}boot_id", "unknown"),
            pid=int(tags[f"{OWNER_TAG_PREFIX}pid"]),
            start_time=None if started == "unknown" else started,
        )
    except (KeyError, ValueError):
        return None
