"""Conversions between PostgreSQL rows and tasktrail's records.

psycopg returns timestamptz as aware datetimes (the session is in UTC) and decodes json
columns itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...job import Event, Job, Ref, WorkerRecord
from ...schedule import ScheduleDef, ScheduleRecord, Tick, spec_from_columns

__all__ = ["event", "job", "schedule", "text_without_nul", "tick", "worker"]


def text_without_nul(text: str | None) -> str | None:
    """Text PostgreSQL can store in a text column: NUL (which none can hold) becomes
    U+FFFD. For errors and reasons, which are read, not parsed."""
    return text.replace("\x00", "\ufffd") if text and "\x00" in text else text


def job(row: Sequence[Any]) -> Job:
    """A Job from the columns of ``select_jobs`` (and the RETURNING lists)."""
    return Job(
        id=row[0],
        task=row[1],
        queue=row[2],
        status=row[3],
        ref=Ref(row[4], row[5]) if row[4] is not None else None,
        priority=row[6],
        args=row[7],
        kwargs=row[8],
        attempts=row[9],
        max_attempts=row[10],
        timeout=row[11],
        run_at=row[12],
        created_at=row[13],
        started_at=row[14],
        finished_at=row[15],
        worker_id=row[16],
        worker_name=row[17],
        result=row[18],
        error=row[19],
        unique_key=row[20],
        lock_key=row[21],
        cancel_requested_at=row[22],
    )


def event(row: Sequence[Any]) -> Event:
    return Event(
        id=row[0],
        job_id=row[1],
        at=row[2],
        kind=row[3],
        attempt=row[4],
        worker_id=row[5],
        worker_name=row[6],
        host=row[7],
        pid=row[8],
        detail=row[9] or {},
    )


def worker(row: Sequence[Any]) -> WorkerRecord:
    return WorkerRecord(
        id=row[0],
        name=row[1],
        host=row[2],
        pid=row[3],
        processes=row[4],
        reserve=row[5],
        queues=tuple(row[6]),
        status=row[7],
        started_at=row[8],
        heartbeat_at=row[9],
        expires_at=row[10],
        stopped_at=row[11],
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
        skip_if_running=row[11],
        source=row[12],
    )
    return ScheduleRecord(
        definition=definition,
        paused=row[13],
        anchor=row[14],
        next_due_at=row[15],
        last_due_at=row[16],
        last_job_id=row[17],
        created_at=row[18],
        updated_at=row[19],
    )


def tick(row: Sequence[Any]) -> Tick:
    return Tick(
        schedule=row[0],
        due_at=row[1],
        outcome=row[2],
        job_id=row[3],
        reason=row[4],
        recorded_at=row[5],
        worker_id=row[6],
    )
