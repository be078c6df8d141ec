"""What a running task can learn about the job it is running for."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .job import Ref

__all__ = ["JobContext", "current_job"]


@dataclass(frozen=True, slots=True)
class JobContext:
    """The job a task function is running for, in a worker's child process
    (:func:`current_job`).

    Attributes:
        job_id: the job's id (``app.job(job_id)`` reads the whole record).
        attempt: which attempt this is, from 1.
        task: the task's full name.
        ref: the business object the job is about, or ``None``.
    """

    job_id: int
    attempt: int
    task: str
    ref: Ref | None
    #: Reads the results of the jobs this one waited for (the worker's app).
    _after_results: Callable[[int], dict[int, Any]] | None = field(
        default=None, repr=False, compare=False
    )

    def after_results(self) -> dict[int, Any]:
        """The results of the jobs this one was enqueued to wait for (``after=``), by
        job id, in id order: what each returned (decoded JSON), or ``None`` for one that
        did not succeed (with ``after_policy="finished"``). Empty for a job enqueued
        without ``after``. Read from the database when called."""
        if self._after_results is None:
            return {}
        return self._after_results(self.job_id)


_current: JobContext | None = None


def current_job() -> JobContext | None:
    """The job being run in this process, or ``None`` outside a worker.

    A task calls it to learn its job's id, attempt and ref (to log them, or to write
    them next to its results), and to read what the jobs it waited for returned
    (:meth:`JobContext.after_results`). A job a task enqueues is a follow-up of this
    one by itself: no need to pass ``parent=``.
    """
    return _current


def _set_current(context: JobContext | None) -> None:
    global _current
    _current = context
