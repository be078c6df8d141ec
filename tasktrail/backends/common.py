"""Pieces both backends share: how a new job maps to its columns, how an outcome maps to
a statement and to events.

Pure functions with no I/O, so the mapping is written once and unit-tested directly. The
status an outcome leads to is not decided here: it is where its events lead in
:data:`tasktrail.lifecycle.TRANSITIONS`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, NoReturn, get_args

from ..errors import InvalidArguments, InvalidTransition, JobNotFound
from ..job import RUNNING, Enqueued, NewJob, Outcome, OutcomeKind
from ..lifecycle import follow, sources

__all__ = [
    "LOST_ERROR_TEMPLATE",
    "Transition",
    "after_cancel_request",
    "after_links",
    "check_after",
    "lost_error",
    "new_job_columns",
    "outcome_events",
    "outcome_kinds",
    "raise_transition_error",
    "requeues_now",
    "transition",
    "with_roots",
]


def new_job_columns(job: NewJob) -> dict[str, Any]:
    """The columns of a new job that both backends insert as they are (``run_at`` and
    the times are the backend's own to write)."""
    return {
        "task": job.task,
        "queue": job.queue,
        "ref_type": job.ref.type if job.ref else None,
        "ref_id": job.ref.id if job.ref else None,
        "priority": job.priority,
        "args": job.args_json,
        "kwargs": job.kwargs_json,
        "max_attempts": job.max_attempts,
        "timeout": job.timeout,
        "unique_key": job.unique_key,
        "lock_key": job.lock_key,
        "lock_limit": job.lock_limit,
        "rate_key": job.rate_key,
        "rate_limit": job.rate_limit,
        "rate_window": job.rate_window,
        "parent_id": job.parent_id,
        "root_id": job.root_id,
        "trace_context": job.trace_context,
    }


def with_roots(
    jobs: Sequence[NewJob], roots_of: Callable[[list[int]], dict[int, int]]
) -> Sequence[NewJob]:
    """``jobs`` with the root of each follow-up's tree filled in from its parent
    (``roots_of`` reads ``{parent id: its root}`` in the enqueueing transaction).

    Raises:
        InvalidArguments: a parent that does not exist.
    """
    wanted = sorted({job.parent_id for job in jobs if job.parent_id and job.root_id is None})
    if not wanted:
        return jobs
    roots = roots_of(wanted)
    missing = [job_id for job_id in wanted if job_id not in roots]
    if missing:
        raise InvalidArguments(f"parent job {missing[0]} does not exist")
    return [
        job._replace(root_id=roots[job.parent_id]) if job.parent_id and job.root_id is None else job
        for job in jobs
    ]


def check_after(jobs: Sequence[NewJob], exists: Callable[[list[int]], Collection[int]]) -> None:
    """Check, before inserting anything, that the jobs to wait for (``after=``) exist;
    ``exists`` reads which of the ids given are jobs, in the enqueueing transaction.

    Raises:
        InvalidArguments: a job to wait for that does not exist.
    """
    wanted = sorted({job_id for job in jobs for job_id in job.after})
    if not wanted:
        return
    known = set(exists(wanted))
    missing = [job_id for job_id in wanted if job_id not in known]
    if missing:
        raise InvalidArguments(f"after: there is no job {missing[0]}")


def after_links(jobs: Sequence[NewJob], enqueued: Sequence[Enqueued]) -> list[dict[str, Any]]:
    """What makes the new jobs enqueued with ``after=`` wait: one ``{job_id, after_id,
    policy}`` per job created and job it waits for. A unique job that joined an active
    one adds nothing: that one stays as it is."""
    return [
        {"job_id": item.id, "after_id": after_id, "policy": job.after_policy}
        for job, item in zip(jobs, enqueued, strict=True)
        if item.created
        for after_id in job.after
    ]


def outcome_events(
    outcome: Outcome, applied: bool, worker_id: int, now: datetime
) -> list[tuple[datetime, str, dict[str, Any]]]:
    """The history events ``(at, kind, detail)`` that record ``outcome``.

    ``applied`` False means the fence refused it: the worker no longer holds the job at
    that attempt, and the only event is ``outcome_rejected``.
    """
    detail = dict(outcome.detail)
    if outcome.error is not None:
        detail["error"] = outcome.error
    if not applied:
        detail.update(outcome=outcome.kind, worker_id=worker_id)
        return [(now, "outcome_rejected", detail)]
    events: list[tuple[datetime, str, dict[str, Any]]] = [
        (outcome.finished_at, outcome.kind, detail)
    ]
    if outcome.retry_at is not None and _retries(outcome):
        events.append(
            (outcome.finished_at, "retry_scheduled", {"run_at": outcome.retry_at.isoformat()})
        )
    return events


#: Outcomes that end the attempt as a failure: with a ``retry_at`` the job is scheduled
#: again (``retry_scheduled``), without it the failure is final.
_FAILURES = frozenset({"failed", "timeout"})


def _retries(outcome: Outcome) -> bool:
    return outcome.kind in _FAILURES and outcome.retry_at is not None


def outcome_kinds(outcome: Outcome) -> tuple[str, ...]:
    """The kinds of the events an applied ``outcome`` writes, in order (the kinds of
    :func:`outcome_events`)."""
    return (outcome.kind, "retry_scheduled") if _retries(outcome) else (outcome.kind,)


#: The error of a job whose worker was lost; ``%s`` is the worker id. PostgreSQL formats
#: it server-side with ``format()``, SQLite with :func:`lost_error`.
LOST_ERROR_TEMPLATE = "worker %s was lost while holding the job (lease expired or it stopped)"


def lost_error(worker_id: int) -> str:
    return LOST_ERROR_TEMPLATE % worker_id


@dataclass(frozen=True, slots=True)
class Transition:
    """What an outcome does to its job row."""

    status: str  # the job's new status
    run_at: datetime | None  # when it runs again, if queued again (None: as it was)
    extra_attempts: int  # added to max_attempts: an interrupted attempt is given back


def transition(outcome: Outcome) -> Transition:
    """The change ``outcome`` makes to its job (both backends apply exactly this): the
    status its events lead a running job to in the lifecycle, and when it runs again."""
    if outcome.kind not in _OUTCOME_KINDS:
        raise ValueError(f"unknown outcome kind {outcome.kind!r}")
    status = follow(RUNNING, *outcome_kinds(outcome))
    if _retries(outcome):
        return Transition(status, outcome.retry_at, 0)
    if outcome.kind == "interrupted":
        # Given back unbegun, or a shutdown killed it: not the job's fault, so it does not
        # use up a retry, and it keeps its place in line (its run_at as it was: it was
        # due), ahead of the jobs enqueued since.
        return Transition(status, None, 1)
    if outcome.kind == "deferred":
        # No worker that took it knew its task yet: later, without using up a retry.
        return Transition(status, outcome.retry_at or outcome.finished_at, 1)
    return Transition(status, None, 0)


#: The kinds an outcome may have (``job.OutcomeKind``): how an attempt ends.
_OUTCOME_KINDS = frozenset(get_args(OutcomeKind))


def after_cancel_request(outcome: Outcome) -> Outcome:
    """The outcome of an attempt whose job was asked to be cancelled while it ran.

    The worker's retry decision was made without knowing of the request, so it is
    overruled: the job is not queued again. A failed attempt is final; one interrupted by
    a shutdown before the kill ends the job as cancelled.
    """
    if _retries(outcome):
        return replace(outcome, retry_at=None)
    if outcome.kind in ("interrupted", "deferred"):
        detail = {**outcome.detail, "reason": "cancel requested"}
        return replace(outcome, kind="cancelled", error="cancelled while running", detail=detail)
    return outcome


def requeues_now(outcome: Outcome, now: datetime) -> bool:
    """Whether ``outcome`` puts its job back in the queue to run at once: other workers
    should be woken for it."""
    change = transition(outcome)
    # (queued with no run_at: it keeps the one it had, which was due)
    return change.status == "queued" and (change.run_at is None or change.run_at <= now)


def raise_transition_error(job_id: int, status: str | None, verb: str) -> NoReturn:
    """Raise the error for a cancel or retry that did not apply."""
    if status is None:
        raise JobNotFound(f"no job with id {job_id}")
    if verb == "cancelled":
        raise InvalidTransition(f"job {job_id} is {status}; it is already final")
    raise InvalidTransition(
        f"job {job_id} is {status}; only {' or '.join(sources(verb))} jobs can be {verb}"
    )
