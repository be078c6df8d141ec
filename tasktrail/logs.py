"""The log lines of ``tasktrail worker`` and ``tasktrail map``: text for people (the
default), or one JSON object per line for log shippers (``--log-format json``).

A JSON line has ``time`` (UTC, ISO 8601 to the millisecond), ``level``, ``logger``,
``message`` and ``pid`` (the process that wrote it), then what the line is about when it
is about a job: ``job_id``, ``task``, ``ref``, ``attempt``, ``worker`` (the worker's
name) and ``child_pid`` (the process that ran the attempt), and ``exception`` (the
traceback) when there is one. A line written by a task's own code (any logger) in a
worker's process carries the job it runs, from :func:`tasktrail.current_job`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Literal

from .context import current_job

__all__ = ["LOG_FORMATS", "setup_logging"]

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
#: The job's fields a record may carry (``extra=`` of the worker's job lines).
JOB_FIELDS = ("job_id", "task", "ref", "attempt", "worker", "child_pid")


def _utc(record: logging.LogRecord) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


class _TextFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for name in JOB_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _JobFields(logging.Filter):
    """Adds the running job's fields to a record that has none (a task's own line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = current_job()
        if job is not None and getattr(record, "job_id", None) is None:
            record.job_id, record.task, record.attempt = job.job_id, job.task, job.attempt
            record.ref = str(job.ref) if job.ref is not None else None
        return True


def setup_logging(level: int, log_format: LogFormat = "text") -> None:
    """tasktrail's lines to standard error at ``level``; in JSON, every logger's (a
    task's own lines too, with its job)."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        handler.addFilter(_JobFields())
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(level)
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    ours = logging.getLogger("tasktrail")
    ours.handlers[:] = [handler]
    ours.setLevel(level)
    ours.propagate = False
