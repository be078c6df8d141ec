"""The errors tasktrail raises.

Every message says what was wrong and, where it helps, what to do about it. The CLI
prints the message of any :class:`TasktrailError` on one line and exits non-zero.
"""

from __future__ import annotations

__all__ = [
    "AppImportError",
    "BackendUnavailable",
    "ConfigurationError",
    "InvalidArguments",
    "InvalidPayload",
    "InvalidTransition",
    "JobNotFound",
    "PermissionDenied",
    "ScheduleNotFound",
    "SchemaError",
    "TasktrailError",
    "UnknownTask",
]


class TasktrailError(Exception):
    """Base class of every error tasktrail raises on purpose."""


class ConfigurationError(TasktrailError):
    """A setting is wrong: a DSN, a worker option, a schema name, a task's options at
    registration (``@app.task``)."""


class BackendUnavailable(TasktrailError):
    """The database cannot be opened or reached (a worker does not stop for it: it
    keeps its outcomes and reconnects)."""


class PermissionDenied(TasktrailError):
    """The database refused an operation to the role in the DSN (PostgreSQL roles:
    the message names the statement refused; see docs/security.md)."""


class SchemaError(TasktrailError):
    """The database schema is missing or of a version this code does not know (run
    ``tasktrail migrate``, or upgrade tasktrail), or the role may not read it."""


class UnknownTask(TasktrailError):
    """A task name that is not registered with the app, or a bare function name that
    several registered tasks end in (the message lists them)."""


class InvalidPayload(TasktrailError):
    """Arguments or a result that are not JSON (str, int, float, bool, None, list,
    dict with string keys; no NaN), or arguments over 1 MB encoded."""


class InvalidArguments(TasktrailError):
    """Arguments that do not fit the task function's signature, or bad enqueue options."""


class JobNotFound(TasktrailError):
    """No job with that id (never enqueued, or pruned by ``tasktrail maintain``)."""


class ScheduleNotFound(TasktrailError):
    """No schedule with that name."""


class InvalidTransition(TasktrailError):
    """The job is not in a state that allows the requested change: cancelling a job
    that has ended, retrying one that is not failed or cancelled."""


class AppImportError(TasktrailError):
    """``module:attribute`` could not be imported or is not a tasktrail App."""
