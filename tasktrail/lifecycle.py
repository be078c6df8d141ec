"""The job lifecycle as a state machine over history events.

Used to check that a job's history is a valid path (the integration and chaos tests run
it on every job), and as the reference for what each event kind means. Pure; no I/O.

::

    enqueued -> queued
    queued    --waiting--->  waiting       (enqueued with after=: at once, in the same
                                            transaction; waits for the jobs it names)
    waiting   --ready----->  queued        (the last of them has ended)
    waiting   --cancelled->  cancelled     (one of them did not succeed, or a person)
    queued    --reserved-->  reserved      --cancelled--> cancelled
    queued    --started--->  running       (claimed straight into a worker's process)
    reserved  --released-->  queued        (worker stopped before starting it)
    reserved  --lost------>  queued        (its worker's lease expired)
    reserved  --started--->  running       (the attempt is counted here)
    running   --succeeded->  succeeded
    running   --failed / timeout / lost-->  failed, then
    failed    --retry_scheduled-->  queued (attempts left) or stays failed (final)
    running   --interrupted-->  queued     (worker shutdown killed it, or its process
                                            never began it; not its fault)
    running   --deferred--->  queued       (no task of that name in the worker: run_at is
                                            a back-off; attempt given back)
    running   --cancel_requested-->  running (its worker is asked to kill it)
    running   --cancelled-->  cancelled
    failed, cancelled  --retried-->  queued (a person asked for another run)
    any       --outcome_rejected-->  same  (a late outcome refused by the fence)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

__all__ = ["TRANSITIONS", "check_history"]

TRANSITIONS: Final[dict[str, dict[str, str]]] = {
    "waiting": {"ready": "queued", "cancelled": "cancelled"},
    "queued": {
        "waiting": "waiting",
        "reserved": "reserved",
        "started": "running",
        "cancelled": "cancelled",
    },
    "reserved": {
        "released": "queued",
        "started": "running",
        "lost": "queued",
        "cancelled": "cancelled",
    },
    "running": {
        "succeeded": "succeeded",
        "failed": "failed",
        "timeout": "failed",
        "lost": "failed",
        "interrupted": "queued",
        "deferred": "queued",
        "cancel_requested": "running",
        "cancelled": "cancelled",
    },
    "failed": {"retry_scheduled": "queued", "retried": "queued"},
    "cancelled": {"retried": "queued"},
    "succeeded": {},
}


def check_history(events: Sequence[Any], final_status: str | None = None) -> list[str]:
    """Problems with a job's history; an empty list means it is a valid path.

    Args:
        events: the job's events in order, as :class:`~tasktrail.job.Event` or any
            object with ``kind`` and ``attempt`` attributes.
        final_status: the job's current status, checked against where the path ends.
    """
    problems: list[str] = []
    if not events:
        return ["no events"]
    if events[0].kind != "enqueued":
        problems.append(f"first event is {events[0].kind!r}, not 'enqueued'")
    state = "queued"
    attempts = 0
    for index, event in enumerate(events[1:], start=1):
        if event.kind == "outcome_rejected":
            continue
        if event.kind == "started":
            attempts += 1
        following = TRANSITIONS.get(state, {}).get(event.kind)
        if following is None:
            problems.append(f"event {index} {event.kind!r} is not allowed when {state}")
            continue
        if event.attempt != attempts:
            problems.append(
                f"event {index} {event.kind!r} says attempt {event.attempt}, expected {attempts}"
            )
        state = following
    if final_status is not None and state != final_status:
        problems.append(f"history ends {state!r} but the job is {final_status!r}")
    return problems
