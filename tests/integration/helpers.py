"""Helpers of the integration ring: waiting on conditions, processes, history checks.

Everything here looks at the system from outside: the database through the public
API, processes through ``/proc``, tasks through the lines they append to files.
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import tasktrail
from tasktrail.lifecycle import check_history

T = TypeVar("T")

#: Generous: on a loaded CI machine a worker may take seconds to start; a passing run
#: never waits this long.
DEFAULT_TIMEOUT = 30.0

#: Event kinds that end a worker's hold on a job (it reserved it, then one of these).
LEAVE_KINDS = frozenset(
    {"released", "succeeded", "failed", "timeout", "lost", "interrupted", "cancelled"}
)
#: Event kinds that end a running attempt.
ATTEMPT_END_KINDS = frozenset(
    {"succeeded", "failed", "timeout", "lost", "interrupted", "cancelled"}
)
ACTIVE = ("queued", "reserved", "running")


def wait_for(
    condition: Callable[[], T],
    what: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.02,
    diagnose: Callable[[], str] | None = None,
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that.

    Raises:
        AssertionError: still falsy after ``timeout`` seconds (or ``diagnose`` found a
            reason to give up early, such as a worker that died); the message says what
            was awaited plus whatever ``diagnose`` reports.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f"\n{diagnose()}" if diagnose else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{extra}")
        time.sleep(interval)


# -- processes ----------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as file:
            text = file.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2 :].split()


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (dead, not yet reaped) counts as dead."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def parent_pid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields is not None else None


def child_pids(pid: int) -> list[int]:
    """Living child processes of ``pid``."""
    children = []
    for name in os.listdir("/proc"):
        if name.isdigit() and parent_pid(int(name)) == pid and process_alive(int(name)):
            children.append(int(name))
    return sorted(children)


# -- the database ---------------------------------------------------------------------


def all_jobs(app: tasktrail.App) -> list[tasktrail.Job]:
    return app.jobs(limit=None)


def status_counts(app: tasktrail.App) -> Counter[str]:
    return Counter(job.status for job in all_jobs(app))


def all_final(app: tasktrail.App) -> bool:
    """No job is queued, reserved or running (so, with retries, none will run again)."""
    return not app.jobs(status=ACTIVE, limit=1)


def all_events(app: tasktrail.App) -> list[tasktrail.Event]:
    """Every event of every job, in id order (the order they were written)."""
    events = [event for job in all_jobs(app) for event in app.events(job.id)]
    return sorted(events, key=lambda event: event.id)


def kinds(events: Iterable[tasktrail.Event]) -> list[str]:
    return [event.kind for event in events]


def path(events: Iterable[tasktrail.Event]) -> list[str]:
    """Event kinds, leaving out a ``reserved`` followed at once by ``started``: whether a
    job waited in a worker's buffer before a process took it depends on timing, not on
    what a test is about (a job claimed for an idle process has ``started`` only)."""
    names = kinds(events)
    return [
        name
        for index, name in enumerate(names)
        if not (name == "reserved" and names[index + 1 : index + 2] == ["started"])
    ]


def assert_valid_histories(app: tasktrail.App) -> list[tasktrail.Job]:
    """Every job's history is a valid lifecycle path ending in its current status."""
    jobs = all_jobs(app)
    assert jobs, "no jobs in the database: the test checked nothing"
    problems = {}
    for job in jobs:
        found = check_history(app.events(job.id), job.status)
        if found:
            problems[job.id] = (job.status, found, kinds(app.events(job.id)))
    assert not problems, f"invalid histories: {problems}"
    return jobs


def max_concurrent(
    events: Sequence[tasktrail.Event],
    enter: Callable[[tasktrail.Event], bool],
    leave: Callable[[tasktrail.Event], bool],
) -> dict[int, int]:
    """Per worker id, the most jobs at once between an ``enter`` and a ``leave`` event.

    Walks the events in id order. A leave without an enter fails the test: the history
    would then be inconsistent in itself.
    """
    current: dict[int, set[int]] = defaultdict(set)
    highest: dict[int, int] = defaultdict(int)
    for event in events:
        if event.worker_id is None:
            continue
        held = current[event.worker_id]
        if enter(event):
            assert event.job_id not in held, f"job {event.job_id} entered twice: {event}"
            held.add(event.job_id)
            highest[event.worker_id] = max(highest[event.worker_id], len(held))
        elif leave(event):
            assert event.job_id in held, f"job {event.job_id} left without entering: {event}"
            held.discard(event.job_id)
    return dict(highest)


def max_held(events: Sequence[tasktrail.Event]) -> dict[int, int]:
    """Per worker, the most jobs it held at once: from ``reserved`` (or ``started`` for a
    job claimed straight into a process, with no ``reserved`` before it) until released
    or finished."""
    waiting: set[int] = set()  # jobs reserved and not started yet

    def enter(event: tasktrail.Event) -> bool:
        if event.kind == "reserved":
            waiting.add(event.job_id)
            return True
        if event.kind == "started":
            if event.job_id in waiting:
                waiting.discard(event.job_id)
                return False  # held since its reserved event
            return True
        return False

    def leave(event: tasktrail.Event) -> bool:
        if event.kind in LEAVE_KINDS:
            waiting.discard(event.job_id)
            return True
        return False

    return max_concurrent(events, enter, leave)


def max_running(events: Sequence[tasktrail.Event]) -> dict[int, int]:
    """Per worker, the most attempts running at once (started until the attempt ended)."""
    return max_concurrent(
        events,
        lambda e: e.kind == "started",
        lambda e: (
            e.kind in ATTEMPT_END_KINDS
            and not (e.kind == "lost" and e.detail.get("was") == "reserved")
        ),
    )


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The most intervals ``(start, end)`` that contain one same instant."""
    points = []
    for start, end in intervals:
        points.append((start, 1))
        points.append((end, -1))
    points.sort(key=lambda point: (point[0], point[1]))  # an end before a start at a tie
    highest = running = 0
    for _, step in points:
        running += step
        highest = max(highest, running)
    return highest


def snapshot(app: tasktrail.App) -> dict[str, Any]:
    """Everything a command could change: jobs, their events, the worker registry."""
    jobs = all_jobs(app)
    return {
        "jobs": [job.to_dict() for job in jobs],
        "events": [event.to_dict() for job in jobs for event in app.events(job.id)],
        "workers": [worker.to_dict() for worker in app.workers(include_stopped=True, limit=None)],
    }
