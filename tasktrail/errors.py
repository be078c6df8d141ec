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
    """A setting is wrong: a DSN, a worker option, a schema name."""


class BackendUnavailable(TasktrailError):
    """The database cannot be opened or reached."""


class PermissionDenied(TasktrailError):
    """The database refused an operation to the role in the DSN (PostgreSQL roles)."""


class SchemaError(TasktrailError):
    """The database schema is missing or of a version this code does not know."""


class UnknownTask(TasktrailError):
    """A task name that is not registered with the app."""


class InvalidPayload(TasktrailError):
    """Arguments or a result that are not JSON, or are too large."""


class InvalidArguments(TasktrailError):
    """Arguments that do not fit the task function's signature, or bad enqueue options."""


class JobNotFound(TasktrailError):
    """No job with that id."""


class ScheduleNotFound(TasktrailError):
    """No schedule with that name."""


class InvalidTransition(TasktrailError):
    """The job is not in a state that allows the requested change."""


class AppImportError(TasktrailError):
    """``module:attribute`` could not be imported or is not a tasktrail App."""
