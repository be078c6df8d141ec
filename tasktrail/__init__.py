"""tasktrail: a task queue for business data.

Jobs live in PostgreSQL or an embedded SQLite file, run in forked worker processes, and
keep their whole history queryable next to the business object they are about.

This module is the public surface: what an application writes code against. Importing
it loads neither the worker (its supervisor and pool) nor a database driver, so an
enqueue-only process or a web app stays light; ``App.run_worker`` imports the worker
when it starts one. Backend types live in :mod:`tasktrail.backends`.
"""

from __future__ import annotations

import warnings
from typing import Any

from .app import App, JobHandle
from .context import JobContext, current_job
from .errors import (
    AppImportError,
    BackendUnavailable,
    ConfigurationError,
    InvalidArguments,
    InvalidPayload,
    InvalidTransition,
    JobNotFound,
    PermissionDenied,
    ScheduleNotFound,
    SchemaError,
    TasktrailError,
    UnknownTask,
)
from .job import Event, Job, Ref
from .retry import RetryPolicy
from .schedule import Tick
from .task import Task
from .worker.config import WorkerConfig

__version__ = "0.1.0"

__all__ = [
    "App",
    "AppImportError",
    "BackendUnavailable",
    "ConfigurationError",
    "Event",
    "InvalidArguments",
    "InvalidPayload",
    "InvalidTransition",
    "Job",
    "JobContext",
    "JobHandle",
    "JobNotFound",
    "PermissionDenied",
    "Ref",
    "RetryPolicy",
    "ScheduleNotFound",
    "SchemaError",
    "Task",
    "TasktrailError",
    "Tick",
    "UnknownTask",
    "WorkerConfig",
    "current_job",
]

# Names this module exported in 0.1, and where they live now. They still resolve, with a
# DeprecationWarning, through 0.2 and go in 0.3 (CHANGELOG.md).
MOVED: dict[str, str] = {
    "Backend": "tasktrail.backends",
    "JobFilter": "tasktrail.backends",
    "TaskStats": "tasktrail.backends",
    "open_backend": "tasktrail.backends",
    "NewJob": "tasktrail.job",
    "Outcome": "tasktrail.job",
    "WorkerRecord": "tasktrail.job",
}


def __getattr__(name: str) -> Any:
    module = MOVED.get(name)
    if module is None:
        raise AttributeError(f"module 'tasktrail' has no attribute {name!r}")
    warnings.warn(
        f"tasktrail.{name} moved to {module}.{name}; import it from there "
        "(the old name goes in tasktrail 0.3)",
        DeprecationWarning,
        stacklevel=2,
    )
    from importlib import import_module

    return getattr(import_module(module), name)
