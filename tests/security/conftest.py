"""Fixtures of the security suite: writing rows behind tasktrail's back, real workers."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tasktrail.config import PostgresDsn, parse_dsn

from ..integration.conftest import WorkerFactory


def insert_job(dsn: str, task: str, args: Any = (), kwargs: Any = None, raw: bool = False) -> int:
    """Insert a queued job (and its ``enqueued`` event) with plain SQL, the way anyone
    with write access to the table could; return its id. With ``raw``, ``args`` and
    ``kwargs`` are written as the text given, JSON or not."""
    args_text = args if raw else json.dumps(list(args))
    kwargs_text = kwargs if raw else json.dumps(kwargs or {})
    parsed = parse_dsn(dsn)
    if isinstance(parsed, PostgresDsn):
        import psycopg

        with psycopg.connect(parsed.conninfo, autocommit=True) as conn:
            row = conn.execute(
                f'INSERT INTO "{parsed.schema}".jobs (task, queue, status, args, kwargs)'  # noqa: S608
                " VALUES (%s, 'default', 'queued', %s, %s) RETURNING id",
                (task, args_text, kwargs_text),
            ).fetchone()
            assert row is not None
            conn.execute(
                f'INSERT INTO "{parsed.schema}".events (job_id, at, kind, attempt)'  # noqa: S608
                " VALUES (%s, now(), 'enqueued', 0)",
                (row[0],),
            )
            return int(row[0])
    now = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    conn = sqlite3.connect(parsed.path)
    try:
        with conn:
            cursor = conn.execute(
                "INSERT INTO jobs (task, queue, status, args, kwargs, run_at, created_at)"
                " VALUES (?, 'default', 'queued', ?, ?, ?, ?)",
                (task, args_text, kwargs_text, now, now),
            )
            job_id = cursor.lastrowid
            conn.execute(
                "INSERT INTO events (job_id, at, kind, attempt) VALUES (?, ?, 'enqueued', 0)",
                (job_id, now),
            )
    finally:
        conn.close()
    assert job_id is not None
    return job_id


@pytest.fixture
def workers(dsn: str, tmp_path: Path) -> Iterator[WorkerFactory]:
    """Real ``tasktrail worker`` processes on the test's database."""
    factory = WorkerFactory(dsn, tmp_path)
    try:
        yield factory
    finally:
        factory.kill_all()
