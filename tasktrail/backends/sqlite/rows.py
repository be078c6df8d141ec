"""Conversions between SQLite rows and tasktrail's records.

Times are stored as UTC ISO 8601 text with microseconds, which sorts in time order;
JSON values as text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from ...job import Event, Job, Ref, WorkerRecord
from ...schedule import ScheduleDef, ScheduleRecord, Tick, spec_from_columns

__all__ = ["dt", "event_row", "job", "schedule", "tick", "ts", "worker"]


def ts(value: datetime) -> str:
    """A datetime as stored."""
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text is not None else None


def job(row: Sequence[Any]) -> Job:
    """A Job from the columns of ``select_jobs`` (and the RETURNING lists)."""
    return Job(
        id=row[0],
        task=row[1],
        queue=row[2],
        status=row[3],
        ref=Ref(row[4], row[5]) if row[4] is not None else None,
        priority=row[6],
        args=json.loads(row[7]),
        kwargs=json.loads(row[8]),
        attempts=row[9],
        max_attempts=row[10],
        timeout=row[11],
        run_at=datetime.fromisoformat(row[12]),
        created_at=datetime.fromisoformat(row[13]),
        started_at=dt(row[14]),
        finished_at=dt(row[15]),
        worker_id=row[16],
        worker_name=row[17],
        result=json.loads(row[18]) if row[18] is not None else None,
        error=row[19],
        unique_key=row[20],
        lock_key=row[21],
        cancel_requested_at=dt(row[22]),
    )


def event_row(
    job_id: int,
    at: datetime,
    kind: str,
    attempt: int,
    worker_id: int | None,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Parameters of ``insert_event``."""
    return {
        "job_id": job_id,
        "at": ts(at),
        "kind": kind,
        "attempt": attempt,
        "worker_id": worker_id,
        "detail": json.dumps(detail, separators=(",", ":")) if detail else None,
    }


def event(row: Sequence[Any]) -> Event:
    return Event(
        id=row[0],
        job_id=row[1],
        at=datetime.fromisoformat(row[2]),
        kind=row[3],
        attempt=row[4],
        worker_id=row[5],
        worker_name=row[6],
        host=row[7],
        pid=row[8],
        detail=json.loads(row[9]) if row[9] else {},
    )


def worker(row: Sequence[Any]) -> WorkerRecord:
    return WorkerRecord(
        id=row[0],
        name=row[1],
        host=row[2],
        pid=row[3],
        processes=row[4],
        reserve=row[5],
        queues=tuple(json.loads(row[6])),
        status=row[7],
        started_at=datetime.fromisoformat(row[8]),
        heartbeat_at=datetime.fromisoformat(row[9]),
        expires_at=datetime.fromisoformat(row[10]),
        stopped_at=dt(row[11]),
    )


def schedule(row: Sequence[Any]) -> ScheduleRecord:
    """A ScheduleRecord from the columns of ``select_schedules``."""
    definition = ScheduleDef(
        name=row[0],
        task=row[1],
        spec=spec_from_columns(row[2], row[3]),
        args_json=row[4],
        kwargs_json=row[5],
        ref=Ref(row[6], row[7]) if row[6] is not None else None,
        queue=row[8],
        priority=row[9],
        catch_up=row[10],
        skip_if_running=bool(row[11]),
        source=row[12],
    )
    return ScheduleRecord(
        definition=definition,
        paused=bool(row[13]),
        anchor=datetime.fromisoformat(row[14]),
        next_due_at=datetime.fromisoformat(row[15]),
        last_due_at=dt(row[16]),
        last_job_id=row[17],
        created_at=datetime.fromisoformat(row[18]),
        updated_at=datetime.fromisoformat(row[19]),
    )


def tick(row: Sequence[Any]) -> Tick:
    return Tick(
        schedule=row[0],
        due_at=datetime.fromisoformat(row[1]),
        outcome=row[2],
        job_id=row[3],
        reason=row[4],
        recorded_at=datetime.fromisoformat(row[5]),
        worker_id=row[6],
    )
