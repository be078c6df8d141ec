"""Fixtures of the bad-input suite: a database per backend, and proof that nothing changed.

Most tests here feed one bad input and check that it is refused and that the database is
exactly as before. Refusals never write, so one database per test module and backend
(``module_dsn``) serves every case of the module: each case compares the whole database
before and after itself. The database holds a little of everything first (``seeded``),
so that "unchanged" means something.
"""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tasktrail
from tasktrail.config import PostgresDsn, parse_dsn

from . import tasks

#: Every table tasktrail writes, with the order its rows are compared in.
TABLES = {
    "jobs": "id",
    "events": "id",
    "workers": "id",
    "schedules": "name",
    "schedule_ticks": "schedule, due_at",
    "migrations": "version",
}


#: PostgreSQL connections of ``database_state``, by DSN (closed with the module's database).
_READERS: dict[str, Any] = {}


def database_state(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every tasktrail table, read with the database's own driver."""
    parsed = parse_dsn(dsn)
    state: dict[str, list[tuple[Any, ...]]] = {}
    if isinstance(parsed, PostgresDsn):
        import psycopg

        if dsn not in _READERS:
            _READERS[dsn] = psycopg.connect(parsed.conninfo, autocommit=True)
        for table, order in TABLES.items():
            query = f'SELECT * FROM "{parsed.schema}".{table} ORDER BY {order}'  # noqa: S608
            state[table] = [tuple(row) for row in _READERS[dsn].execute(query.encode())]
        return state
    conn = sqlite3.connect(parsed.path)
    try:
        for table, order in TABLES.items():
            query = f"SELECT * FROM {table} ORDER BY {order}"  # noqa: S608 - fixed names
            state[table] = [tuple(row) for row in conn.execute(query)]
    finally:
        conn.close()
    return state


@contextlib.contextmanager
def nothing_changes(dsn: str) -> Iterator[None]:
    """Fail unless the database holds exactly the same rows after the block."""
    before = database_state(dsn)
    yield
    after = database_state(dsn)
    changed = {table for table in TABLES if before[table] != after[table]}
    assert not changed, f"bad input changed {sorted(changed)}: {before} -> {after}"


def _with_schema(dsn: str, schema: str) -> str:
    return f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def module_dsn(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Each backend in turn, one new database for the test module (see the docstring)."""
    if request.param == "sqlite":
        directory: Path = tmp_path_factory.mktemp("badinput")
        yield f"sqlite:///{directory / 'jobs.db'}"
        return
    import psycopg

    server = request.getfixturevalue("pg_server")
    schema = f"tt_test_{uuid.uuid4().hex[:12]}"
    dsn = _with_schema(server, schema)
    yield dsn
    reader = _READERS.pop(dsn, None)
    if reader is not None:
        reader.close()
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())


@pytest.fixture(scope="module")
def seeded(module_dsn: str) -> Iterator[tasktrail.App]:
    """The tasks' app on the module's database, which holds a queued job with a ref, a
    cancelled one and a schedule."""
    tasks.app.configure(module_dsn)
    try:
        tasks.echo.enqueue("seed", ref=("website", "42"))
        tasks.add.enqueue(1, 2, delay=3600).cancel(reason="seed")
        tasks.app.schedules.add("seed", tasks.echo, every=3600, args=["tick"])
        yield tasks.app
    finally:
        tasks.app.close()


@pytest.fixture
def app(seeded: tasktrail.App, module_dsn: str) -> tasktrail.App:
    """The seeded app, pointed at the module's database again (a test may have moved it)."""
    if seeded.dsn != module_dsn:
        seeded.configure(module_dsn)
    return seeded
