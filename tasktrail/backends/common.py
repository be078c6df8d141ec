"""Pieces both backends share: how an outcome maps to a statement and to events.

Pure functions with no I/O, so the mapping is written once and unit-tested directly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NoReturn

from ..errors import InvalidTransition, JobNotFound
from ..job import Outcome

__all__ = [
    "LOST_ERROR_TEMPLATE",
    "finish_statement",
    "lost_error",
    "new_status",
    "outcome_events",
    "raise_transition_error",
]


def finish_statement(outcome: Outcome) -> tuple[str, dict[str, Any]]:
    """The named ``finish_*`` statement that records ``outcome``, and its own parameters."""
    if outcome.kind == "succeeded":
        return "finish_succeeded", {"result": outcome.result_json}
    if outcome.kind in ("failed", "timeout"):
        if outcome.retry_at is not None:
            return "finish_retry", {"retry_at": outcome.retry_at, "error": outcome.error}
        return "finish_failed", {"error": outcome.error}
    if outcome.kind == "interrupted":
        return "finish_interrupted", {}
    if outcome.kind == "cancelled":
        return "finish_cancelled", {"error": outcome.error}
    raise ValueError(f"unknown outcome kind {outcome.kind!r}")


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
    if outcome.kind in ("failed", "timeout") and outcome.retry_at is not None:
        events.append(
            (outcome.finished_at, "retry_scheduled", {"run_at": outcome.retry_at.isoformat()})
        )
    return events


#: The error of a job whose worker was lost; ``%s`` is the worker id. PostgreSQL formats
#: it server-side with ``format()``, SQLite with :func:`lost_error`.
LOST_ERROR_TEMPLATE = "worker %s was lost while holding the job (lease expired or it stopped)"


def lost_error(worker_id: int) -> str:
    return LOST_ERROR_TEMPLATE % worker_id


def new_status(outcome: Outcome) -> tuple[str, datetime | None]:
    """The job's status after ``outcome``, and its new ``run_at`` if it is queued again."""
    if outcome.kind == "succeeded":
        return "succeeded", None
    if outcome.kind in ("failed", "timeout"):
        if outcome.retry_at is not None:
            return "queued", outcome.retry_at
        return "failed", None
    if outcome.kind == "interrupted":
        return "queued", outcome.finished_at
    if outcome.kind == "cancelled":
        return "cancelled", None
    raise ValueError(f"unknown outcome kind {outcome.kind!r}")


def raise_transition_error(job_id: int, status: str | None, verb: str) -> NoReturn:
    """Raise the error for a cancel or retry that did not apply."""
    if status is None:
        raise JobNotFound(f"no job with id {job_id}")
    allowed = "queued" if verb == "cancelled" else "failed or cancelled"
    raise InvalidTransition(f"job {job_id} is {status}; only {allowed} jobs can be {verb}")
