"""Plain records for unit tests (no database)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from tasktrail.job import Job

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)


def make_job(**changes: Any) -> Job:
    fields: dict[str, Any] = {
        "id": 7,
        "task": "app.refresh",
        "queue": "default",
        "status": "running",
        "ref": None,
        "priority": 0,
        "args": [],
        "kwargs": {},
        "attempts": 1,
        "max_attempts": 3,
        "timeout": 30.0,
        "run_at": T0,
        "created_at": T0,
        "started_at": T0,
        "finished_at": None,
        "worker_id": 1,
        "worker_name": "host:1",
        "result": None,
        "error": None,
    }
    fields.update(changes)
    return Job(**fields)
