"""Conversions between SQLite rows and tasktrail's records.

Times are stored as UTC ISO 8601 text with microseconds, which sorts in time order;
JSON values as text.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from ..records import FROM_TEXT

__all__ = ["event_row", "job", "queue", "schedule", "tick", "ts", "worker"]


def ts(value: datetime) -> str:
    """A datetime as stored."""
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def event_row(
    job_id: int,
    at: datetime,
    kind: str,
    attempt: int,
    worker_id: int | None,
    detail: dict[str, Any] | None = None,
    child_pid: int | None = None,
) -> dict[str, Any]:
    """Parameters of ``insert_event``."""
    return {
        "job_id": job_id,
        "at": ts(at),
        "kind": kind,
        "attempt": attempt,
        "worker_id": worker_id,
        "detail": json.dumps(detail, separators=(",", ":")) if detail else None,
        "child_pid": child_pid,
    }


job = FROM_TEXT.job
event = FROM_TEXT.event
worker = FROM_TEXT.worker
queue = FROM_TEXT.queue
schedule = FROM_TEXT.schedule
tick = FROM_TEXT.tick
