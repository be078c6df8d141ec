"""Schedules of the PostgreSQL backend: storing them, and the tick store firing uses.

Functions of a connection inside the caller's transaction; the firing algorithm itself is
:func:`tasktrail.backends.ticks.fire_due`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg

from ...errors import ConfigurationError, ScheduleNotFound
from ...job import Enqueued, NewJob
from ...schedule import ScheduleDef, ScheduleRecord, Tick, paused_timing, saved_timing
from . import rows

__all__ = ["PostgresTickStore", "get", "list_all", "save", "set_paused"]

Connection = psycopg.Connection[Any]


def get(conn: Connection, q: dict[str, str], name: str) -> ScheduleRecord | None:
    query = q["select_schedules"] + " WHERE name = %(name)s"
    row = conn.execute(query.encode(), {"name": name}).fetchone()
    return rows.schedule(row) if row else None


def list_all(conn: Connection, q: dict[str, str]) -> list[ScheduleRecord]:
    query = q["select_schedules"] + " ORDER BY name"
    return [rows.schedule(row) for row in conn.execute(query.encode())]


def save(
    conn: Connection, q: dict[str, str], definition: ScheduleDef, now: datetime, replace: bool
) -> ScheduleRecord:
    # Saves of one name (e.g. every worker storing @app.periodic at start) queue up here.
    conn.execute(q["lock_schedule_name"], {"name": definition.name})
    existing = get(conn, q, definition.name)
    if existing is not None and not replace:
        raise ConfigurationError(
            f"a schedule named {definition.name!r} already exists; remove it first, or replace it"
        )
    anchor, next_due = saved_timing(existing, definition, now)
    params = {**definition.columns(), "now": now, "anchor": anchor, "next_due_at": next_due}
    conn.execute(q["insert_schedule" if existing is None else "update_schedule"], params)
    saved = get(conn, q, definition.name)
    assert saved is not None
    return saved


def set_paused(
    conn: Connection, q: dict[str, str], name: str, paused: bool, now: datetime
) -> ScheduleRecord:
    record = get(conn, q, name)
    if record is None:
        raise ScheduleNotFound(f"no schedule named {name!r}")
    params = {
        "name": name,
        "paused": paused,
        "next_due_at": paused_timing(record, paused, now),
        "now": now,
    }
    conn.execute(q["pause_schedule"], params)
    saved = get(conn, q, name)
    assert saved is not None
    return saved


class PostgresTickStore:
    """The :class:`~tasktrail.backends.ticks.TickStore` of one transaction."""

    def __init__(
        self,
        conn: Connection,
        q: dict[str, str],
        enqueue: Callable[[Connection, NewJob, datetime], Enqueued],
    ) -> None:
        self.conn = conn
        self.q = q
        self._enqueue = enqueue

    def due_schedules(self, now: datetime) -> list[ScheduleRecord]:
        return [
            rows.schedule(row) for row in self.conn.execute(self.q["due_schedules"], {"now": now})
        ]

    def insert_tick(self, tick: Tick) -> bool:
        params = {
            "schedule": tick.schedule,
            "due_at": tick.due_at,
            "outcome": tick.outcome,
            "job_id": tick.job_id,
            "reason": rows.text_without_nul(tick.reason),
            "now": tick.recorded_at,
            "worker_id": tick.worker_id,
        }
        return self.conn.execute(self.q["insert_tick"], params).fetchone() is not None

    def set_tick(
        self, schedule: str, due_at: datetime, outcome: str, job_id: int, reason: str | None
    ) -> None:
        params = {
            "schedule": schedule,
            "due_at": due_at,
            "outcome": outcome,
            "job_id": job_id,
            "reason": reason,
        }
        self.conn.execute(self.q["set_tick"], params)

    def job_status(self, job_id: int) -> str | None:
        row = self.conn.execute(self.q["job_status"], {"job_id": job_id}).fetchone()
        return str(row[0]) if row else None

    def enqueue(self, job: NewJob, now: datetime) -> Enqueued:
        return self._enqueue(self.conn, job, now)

    def advance(
        self,
        name: str,
        next_due: datetime,
        last_due: datetime | None,
        last_job_id: int | None,
        now: datetime,
    ) -> None:
        params = {
            "name": name,
            "next_due_at": next_due,
            "last_due_at": last_due,
            "last_job_id": last_job_id,
            "now": now,
        }
        self.conn.execute(self.q["advance_schedule"], params)
