"""Looking at processes from outside, through ``/proc``: children, liveness, memory."""

from __future__ import annotations

import contextlib
import os

__all__ = ["Identity", "alive", "children", "identity", "rss_bytes", "signal_quietly"]

#: A process as (pid, start time in clock ticks since boot): a pid reused by another
#: process is not mistaken for the one we saw.
Identity = tuple[int, int]


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as file:
            text = file.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (its main thread's), alive or zombie."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as file:
            return [int(part) for part in file.read().split()]
    except OSError:
        return []


def identity(pid: int) -> Identity | None:
    fields = _stat_fields(pid)
    return (pid, int(fields[19])) if fields is not None else None


def alive(process: Identity) -> bool:
    """True while that very process runs; a zombie counts as dead."""
    fields = _stat_fields(process[0])
    return fields is not None and fields[0] not in ("Z", "X") and int(fields[19]) == process[1]


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as file:
            for line in file:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def signal_quietly(pid: int, signum: int) -> None:
    """Send a signal to a process that may be gone already."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)
