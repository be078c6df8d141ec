"""What a running task can learn about the job it is running for."""

from __future__ import annotations

from dataclasses import dataclass

from .job import Ref

__all__ = ["JobContext", "current_job"]


@dataclass(frozen=True, slots=True)
class JobContext:
    """The job a task function is running for, in a worker's child process."""

    job_id: int
    attempt: int
    task: str
    ref: Ref | None


_current: JobContext | None = None


def current_job() -> JobContext | None:
    """The job being run in this process, or ``None`` outside a worker."""
    return _current


def _set_current(context: JobContext | None) -> None:
    global _current
    _current = context
