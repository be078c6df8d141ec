"""Schedules of the SQLite backend: storing them, and the tick store firing uses.

Functions of a connection inside the caller's write transaction (``BEGIN IMMEDIATE``);
the firing algorithm itself is :func:`tasktrail.backends.ticks.fire_due`.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from ...errors import ConfigurationError, ScheduleNotFound
from ...job import Enqueued, NewJob
from ...schedule import ScheduleDef, ScheduleRecord, Tick, paused_timing, saved_timing
from .._sql import queries
from . import jobs as job_sql
from . import rows

__all__ = ["SqliteTickStore", "get", "list_all", "list_ticks", "remove", "save", "set_paused"]

_Q = queries("sqlite")


def get(conn: sqlite3.Connection, name: str) -> ScheduleRecord | None:
    row = conn.execute(_Q["select_schedules"] + " WHERE name = :name", {"name": name}).fetchone()
    return rows.schedule(row) if row else None


def list_all(conn: sqlite3.Connection) -> list[ScheduleRecord]:
    return [rows.schedule(row) for row in conn.execute(_Q["select_schedules"] + " ORDER BY name")]


def save(
    conn: sqlite3.Connection, definition: ScheduleDef, now: datetime, replace: bool
) -> ScheduleRecord:
    existing = get(conn, definition.name)
    if existing is not None and not replace:
        raise ConfigurationError(
            f"a schedule named {definition.name!r} already exists; remove it first, or replace it"
        )
    anchor, next_due = saved_timing(existing, definition, now)
    params: dict[str, Any] = {
        **definition.columns(),
        "now": rows.ts(now),
        "anchor": rows.ts(anchor),
        "next_due_at": rows.ts(next_due),
    }
    conn.execute(_Q["insert_schedule" if existing is None else "update_schedule"], params)
    saved = get(conn, definition.name)
    assert saved is not None
    return saved


def set_paused(conn: sqlite3.Connection, name: str, paused: bool, now: datetime) -> ScheduleRecord:
    record = get(conn, name)
    if record is None:
        raise ScheduleNotFound(f"no schedule named {name!r}")
    params = {
        "name": name,
        "paused": int(paused),
        "next_due_at": rows.ts(paused_timing(record, paused, now)),
        "now": rows.ts(now),
    }
    conn.execute(_Q["pause_schedule"], params)
    saved = get(conn, name)
    assert saved is not None
    return saved


def remove(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute(_Q["delete_schedule"], {"name": name}).rowcount > 0


def list_ticks(conn: sqlite3.Connection, name: str, limit: int | None) -> list[Tick]:
    params = {"schedule": name, "limit": -1 if limit is None else limit}
    return [rows.tick(row) for row in conn.execute(_Q["list_ticks"], params)]


class SqliteTickStore:
    """The :class:`~tasktrail.backends.ticks.TickStore` of one write transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def due_schedules(self, now: datetime) -> list[ScheduleRecord]:
        names = self.conn.execute(_Q["due_schedules"], {"now": rows.ts(now)}).fetchall()
        return [record for (name,) in names if (record := get(self.conn, name)) is not None]

    def insert_tick(self, tick: Tick) -> bool:
        params = {
            "schedule": tick.schedule,
            "due_at": rows.ts(tick.due_at),
            "outcome": tick.outcome,
            "job_id": tick.job_id,
            "reason": tick.reason,
            "now": rows.ts(tick.recorded_at),
            "worker_id": tick.worker_id,
        }
        return self.conn.execute(_Q["insert_tick"], params).rowcount > 0

    def set_tick(
        self, schedule: str, due_at: datetime, outcome: str, job_id: int, reason: str | None
    ) -> None:
        params = {
            "schedule": schedule,
            "due_at": rows.ts(due_at),
            "outcome": outcome,
            "job_id": job_id,
            "reason": reason,
        }
        self.conn.execute(_Q["set_tick"], params)

    def job_status(self, job_id: int) -> str | None:
        row = self.conn.execute(_Q["job_status"], {"job_id": job_id}).fetchone()
        return str(row[0]) if row else None

    def enqueue(self, job: NewJob, now: datetime) -> Enqueued:
        [enqueued] = job_sql.enqueue_in(self.conn, [job], now)
        return enqueued

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
            "next_due_at": rows.ts(next_due),
            "last_due_at": rows.ts(last_due) if last_due else None,
            "last_job_id": last_job_id,
            "now": rows.ts(now),
        }
        self.conn.execute(_Q["advance_schedule"], params)
