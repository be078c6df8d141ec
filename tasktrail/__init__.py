"""tasktrail: a task queue for business data.

Jobs live in PostgreSQL or an embedded SQLite file, run in forked worker processes, and
keep their whole history queryable next to the business object they are about.
"""

from __future__ import annotations

from .app import App, JobHandle
from .backends import Backend, JobFilter, TaskStats, open_backend
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
    SchemaError,
    TasktrailError,
    UnknownTask,
)
from .job import Event, Job, NewJob, Outcome, Ref, WorkerRecord
from .retry import RetryPolicy
from .task import Task
from .worker import WorkerConfig

__version__ = "0.1.0"

__all__ = [
    "App",
    "AppImportError",
    "Backend",
    "BackendUnavailable",
    "ConfigurationError",
    "Event",
    "InvalidArguments",
    "InvalidPayload",
    "InvalidTransition",
    "Job",
    "JobContext",
    "JobFilter",
    "JobHandle",
    "JobNotFound",
    "NewJob",
    "Outcome",
    "PermissionDenied",
    "Ref",
    "RetryPolicy",
    "SchemaError",
    "Task",
    "TaskStats",
    "TasktrailError",
    "UnknownTask",
    "WorkerConfig",
    "WorkerRecord",
    "current_job",
    "open_backend",
]
