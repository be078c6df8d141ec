"""What a running task can learn about the job it is running for."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .job import Ref

__all__ = ["JobContext", "current_job"]


@dataclass(frozen=True, slots=True)
class JobContext:
    """The job a task function is running for, in a worker's child process."""

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
    """The job being run in this process, or ``None`` outside a worker."""
    return _current


def _set_current(context: JobContext | None) -> None:
    global _current
    _current = context
