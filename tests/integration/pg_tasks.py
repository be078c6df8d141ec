"""Task functions run by the PostgreSQL worker tests (``test_postgres_workers.py``).

Workers import this module with ``--app tests.integration.pg_tasks:app`` and take their
DSN from ``TASKTRAIL_DSN``; the test process imports it too and points ``app`` at the
test's schema with ``app.configure``.

Tasks that must be seen from outside insert a row into ``<schema>.runs`` through their
own psycopg connection (one per child process, as a task touching business data would
have), so the test checks in SQL that every job ran, and ran once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

import tasktrail
from tasktrail.config import PostgresDsn, parse_dsn

app = tasktrail.App()

#: How long a held task waits for its gate before giving up (a safety net only).
GATE_TIMEOUT = 60.0

_connection: tuple[int, psycopg.Connection[Any]] | None = None


def _dsn() -> PostgresDsn:
    parsed = parse_dsn(app.dsn)
    if not isinstance(parsed, PostgresDsn):
        raise RuntimeError(f"these tasks need a PostgreSQL DSN, got {app.url}")
    return parsed


def schema() -> str:
    return _dsn().schema


def runs_table() -> sql.Identifier:
    return sql.Identifier(schema(), "runs")


def create_runs_table(conn: psycopg.Connection[Any]) -> None:
    """The side table tasks record their runs in (no unique key: duplicates must show)."""
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (job_id bigint NOT NULL, attempt int NOT NULL,"
            " pid int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())"
        ).format(runs_table())
    )


def _business_connection() -> psycopg.Connection[Any]:
    """This process's own connection (never one inherited across a fork)."""
    global _connection
    if _connection is None or _connection[0] != os.getpid() or _connection[1].closed:
        # No need to wait for the disk: the table only tells the test what ran.
        conn = psycopg.connect(
            _dsn().conninfo, autocommit=True, options="-c synchronous_commit=off"
        )
        _connection = (os.getpid(), conn)
    return _connection[1]


def _record_run() -> None:
    job = tasktrail.current_job()
    if job is None:
        raise RuntimeError("not running in a worker")
    _business_connection().execute(
        sql.SQL("INSERT INTO {} (job_id, attempt, pid) VALUES (%s, %s, %s)").format(runs_table()),
        (job.job_id, job.attempt, os.getpid()),
    )


@app.task(name="record")
def record() -> None:
    """Record that this attempt ran."""
    _record_run()


@app.task(name="hold", retries=2, retry_delay=0.05, retry_jitter=0.0)
def hold(gate: str) -> None:
    """Record the attempt, then wait until the file ``gate`` exists."""
    _record_run()
    deadline = time.monotonic() + GATE_TIMEOUT
    while not Path(gate).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {gate} was never opened")
        time.sleep(0.01)


@app.task(name="noop")
def noop() -> None:
    return None


@app.task(name="nul_result")
def nul_result() -> str:
    """A result holding NUL, which jsonb could not store (tasktrail uses json)."""
    return "a\x00b"
