"""Shared fixtures: a fresh SQLite file, or a fresh PostgreSQL schema, per test.

PostgreSQL tests use ``TASKTRAIL_TEST_PG_DSN`` (default
``postgresql://postgres@127.0.0.1:5432/test``). When that server is unreachable they
are skipped with the reason, except when ``CI`` is set: then they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

PG_DSN_ENV = "TASKTRAIL_TEST_PG_DSN"
DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def pg_base_dsn() -> str:
    return os.environ.get(PG_DSN_ENV) or DEFAULT_PG_DSN


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The base DSN of a reachable PostgreSQL server (skip or fail if there is none)."""
    dsn = pg_base_dsn()
    try:
        import psycopg

        with psycopg.connect(dsn, connect_timeout=5):
            pass
    except Exception as exc:  # ImportError or any connection error
        message = f"PostgreSQL not reachable at {dsn} ({type(exc).__name__}: {exc})"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI is set, so PostgreSQL tests must run", pytrace=False)
        pytest.skip(f"{message}; set {PG_DSN_ENV} to run the PostgreSQL tests")
    return dsn


def _with_schema(dsn: str, schema: str) -> str:
    return f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"


@pytest.fixture
def pg_dsn(pg_server: str) -> Iterator[str]:
    """A DSN whose tasktrail schema is new and empty; dropped afterwards."""
    import psycopg

    schema = f"tt_test_{uuid.uuid4().hex[:12]}"
    yield _with_schema(pg_server, schema)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def sqlite_dsn(tmp_path: os.PathLike[str]) -> str:
    """A DSN for a new SQLite file in the test's temporary directory."""
    return f"sqlite:///{os.path.join(tmp_path, 'jobs.db')}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def dsn(request: pytest.FixtureRequest) -> str:
    """Each backend in turn: the same test runs on SQLite and on PostgreSQL."""
    return str(
        request.getfixturevalue({"sqlite": "sqlite_dsn", "postgres": "pg_dsn"}[request.param])
    )
