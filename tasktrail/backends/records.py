"""Rows of the ``jobs``, ``events``, ``workers``, ``schedules`` and ``schedule_ticks``
tables as tasktrail's records, for both backends.

The columns come in the same order from both (the SQL files select them so); what
differs is how a backend's driver returns times and JSON: SQLite gives text, psycopg
gives datetimes and decoded JSON. A :class:`Columns` says which.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..job import Event, HeldJob, Job, QueueState, Ref, WorkerRecord
from ..schedule import ScheduleDef, ScheduleRecord, Tick, spec_from_columns

__all__ = ["AS_IS", "FROM_TEXT", "Columns", "Malformed", "held"]


def _same(value: Any) -> Any:
    return value


def _time_from_text(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text is not None else None


class Malformed(str):
    """Job data that is not JSON (a row written by hand): kept as the text it is, so the
    worker can fail that one job instead of every claim failing while reading it."""


def _json_from_text(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return Malformed(text)


def held(row: Sequence[Any]) -> HeldJob:
    """A HeldJob from the columns ``id, task, queue, status, ref_type, ref_id, priority,
    args, kwargs, attempts, max_attempts, timeout, worker_id, lock_key, child_pid,
    trace_context`` (the hot path's RETURNING lists; ``child_pid`` only from a claim
    that starts the job), the arguments as JSON text (both backends return them as
    text: SQLite stores text, PostgreSQL casts ``::text``).

    Anything but text there (a row written by hand in SQLite can hold a number or a
    blob) becomes text that is not JSON, so that job alone fails as malformed.
    """
    args, kwargs = row[7], row[8]
    return HeldJob(
        row[0], row[1], row[2], row[3],
        Ref(row[4], row[5]) if row[4] is not None else None,
        row[6],
        args if type(args) is str else "",
        kwargs if type(kwargs) is str else "",
        row[9], row[10], row[11], row[12], row[13], row[14], row[15],
    )  # fmt: skip


def _tuple(value: Any) -> tuple[str, ...]:
    return tuple(json.loads(value) if isinstance(value, str) else value)


@dataclass(frozen=True, slots=True)
class Columns:
    """How one backend's driver returns times and JSON values."""

    time: Callable[[Any], Any]
    data: Callable[[Any], Any]

    def job(self, row: Sequence[Any]) -> Job:
        """A Job from the columns of ``select_jobs`` (and the RETURNING lists)."""
        time, data = self.time, self.data
        return Job(
            id=row[0],
            task=row[1],
            queue=row[2],
            status=row[3],
            ref=Ref(row[4], row[5]) if row[4] is not None else None,
            priority=row[6],
            args=data(row[7]),
            kwargs=data(row[8]),
            attempts=row[9],
            max_attempts=row[10],
            timeout=row[11],
            run_at=time(row[12]),
            created_at=time(row[13]),
            started_at=time(row[14]),
            finished_at=time(row[15]),
            worker_id=row[16],
            worker_name=row[17],
            result=data(row[18]),
            error=row[19],
            unique_key=row[20],
            lock_key=row[21],
            cancel_requested_at=time(row[22]),
            parent_id=row[23],
            root_id=row[24] if row[24] is not None else row[0],
            waiting_for=row[25] if len(row) > 25 else None,
            after_policy=row[26] if len(row) > 26 else None,
            lock_limit=row[27] if len(row) > 27 else None,
            rate_key=row[28] if len(row) > 28 else None,
            rate_limit=row[29] if len(row) > 29 else None,
            rate_window=row[30] if len(row) > 30 else None,
        )

    def event(self, row: Sequence[Any]) -> Event:
        return Event(
            id=row[0],
            job_id=row[1],
            at=self.time(row[2]),
            kind=row[3],
            attempt=row[4],
            worker_id=row[5],
            worker_name=row[6],
            host=row[7],
            pid=row[8],
            detail=self.data(row[9]) or {},
            child_pid=row[10],
        )

    def worker(self, row: Sequence[Any]) -> WorkerRecord:
        return WorkerRecord(
            id=row[0],
            name=row[1],
            host=row[2],
            pid=row[3],
            processes=row[4],
            reserve=row[5],
            queues=_tuple(row[6]),
            status=row[7],
            started_at=self.time(row[8]),
            heartbeat_at=self.time(row[9]),
            expires_at=self.time(row[10]),
            stopped_at=self.time(row[11]),
            requested_processes=row[12],
            autoscale_min=row[13],
            autoscale_max=row[14],
        )

    def queue(self, row: Sequence[Any]) -> QueueState:
        """A QueueState from the columns of ``list_queues``."""
        return QueueState(
            name=row[0],
            paused=bool(row[1]),
            changed_at=self.time(row[2]),
            changed_by=row[3],
            queued=int(row[4]),
            running=int(row[5]),
            oldest_run_at=self.time(row[6]),
        )

    def schedule(self, row: Sequence[Any]) -> ScheduleRecord:
        """A ScheduleRecord from the columns of ``select_schedules`` (JSON as text)."""
        definition = ScheduleDef(
            name=row[0],
            task=row[1],
            spec=spec_from_columns(row[2], row[3], row[20]),
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
            anchor=self.time(row[14]),
            next_due_at=self.time(row[15]),
            last_due_at=self.time(row[16]),
            last_job_id=row[17],
            created_at=self.time(row[18]),
            updated_at=self.time(row[19]),
        )

    def tick(self, row: Sequence[Any]) -> Tick:
        return Tick(
            schedule=row[0],
            due_at=self.time(row[1]),
            outcome=row[2],
            job_id=row[3],
            reason=row[4],
            recorded_at=self.time(row[5]),
            worker_id=row[6],
        )


#: psycopg: times and JSON come decoded.
AS_IS = Columns(time=_same, data=_same)
#: sqlite3: times are ISO 8601 text, JSON is text.
FROM_TEXT = Columns(time=_time_from_text, data=_json_from_text)
