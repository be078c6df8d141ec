"""SQL setup fed bad schema names: ``tasktrail schema``, ``tasktrail migrate`` and the apps.

A schema name is an identifier spliced into DDL, so it is the one place where injection
could work: only plain lower-case identifiers are accepted (and not PostgreSQL's own
``pg_*`` / ``information_schema``), and a refused name creates nothing anywhere. Names that
are SQL keywords are valid identifiers and must work end to end, quoted.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from tasktrail import App
from tasktrail.cli import cli

from .helpers import CLEAN_ENV, INJECTION, assert_one_line_error

BAD_SCHEMAS = [
    INJECTION,
    '"; DROP SCHEMA public CASCADE; --',
    "public; DROP TABLE x",
    "$$",
    "%s",
    "{}",
    "Upper",
    "with space",
    "a" * 64,
    "1abc",
    "é",
    "tasktrail\n",
    "pg_catalog",
    "pg_toast",
    "information_schema",
]


#: Schemas that other test runs and benchmarks create and drop while these tests run.
OTHERS = re.compile(r"^(tt_|bench|perf|pg_temp_|pg_toast_temp_)")


def catalog(pg_server: str) -> dict[str, Any]:
    """The schemas of the database (but those others come and go in), and the objects of
    the schemas every database has."""
    import psycopg

    with psycopg.connect(pg_server) as conn:
        schemas = [r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")]
        objects = conn.execute(
            "SELECT n.nspname, count(c.oid) FROM pg_namespace n"
            " LEFT JOIN pg_class c ON c.relnamespace = n.oid"
            " WHERE n.nspname IN ('public', 'information_schema', 'pg_catalog')"
            " GROUP BY n.nspname ORDER BY 1"
        ).fetchall()
    return {"schemas": sorted(s for s in schemas if not OTHERS.match(s)), "objects": objects}


def tasktrail(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), env=CLEAN_ENV, catch_exceptions=False)


@pytest.mark.parametrize("schema", BAD_SCHEMAS)
def test_schema_refuses_a_bad_name_and_prints_no_sql(schema: str) -> None:
    result = tasktrail("schema", "--dsn", "postgresql://db.internal/shop", "--schema", schema)
    message = (
        "reserved for PostgreSQL"
        if schema.startswith(("pg_", "information"))
        else "invalid schema name"
    )
    assert_one_line_error(result, 1, message)


@pytest.mark.postgres
@pytest.mark.parametrize("schema", BAD_SCHEMAS)
def test_migrate_refuses_a_bad_name_and_creates_nothing(pg_server: str, schema: str) -> None:
    before = catalog(pg_server)
    for how in (("--schema", schema), ("--dsn", f"{pg_server}?schema={_quote(schema)}")):
        result = tasktrail("migrate", "--dsn", pg_server, *how)
        assert result.exit_code == 1, result.stderr
        assert "schema" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(Exception, match="schema name"):
        App(pg_server, schema=schema).backend  # noqa: B018
    assert catalog(pg_server) == before


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


@pytest.fixture
def keyword_schema(pg_server: str) -> Iterator[str]:
    """``select``: an SQL keyword, which is a valid identifier once quoted."""
    import psycopg

    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute('DROP SCHEMA IF EXISTS "select" CASCADE')
    yield "select"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute('DROP SCHEMA IF EXISTS "select" CASCADE')


@pytest.mark.postgres
def test_a_keyword_as_schema_name_works_quoted_both_ways(
    pg_server: str, keyword_schema: str
) -> None:
    import psycopg

    before = catalog(pg_server)
    printed = tasktrail("schema", "--dsn", pg_server, "--schema", keyword_schema)
    assert printed.exit_code == 0, printed.stderr
    assert 'CREATE SCHEMA IF NOT EXISTS "select";' in printed.stdout
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(printed.stdout.encode())  # what a DBA would run with psql -f
        objects = conn.execute(
            "SELECT count(*) FROM pg_class WHERE relnamespace = '\"select\"'::regnamespace"
        ).fetchone()
    assert objects is not None and objects[0] > 10
    after = catalog(pg_server)
    assert after["schemas"] == sorted([*before["schemas"], keyword_schema])
    assert after["objects"] == before["objects"]

    migrated = tasktrail("migrate", "--dsn", pg_server, "--schema", keyword_schema)
    assert migrated.exit_code == 0, migrated.stderr
    assert "is up to date" in migrated.stdout

    app = App(pg_server, schema=keyword_schema)
    try:

        @app.task(name="echo")
        def echo(*args: Any) -> list[Any]:
            return list(args)

        handle = echo.enqueue("select * from jobs", ref=("table", "select"))
        assert app.job(handle.id).args == ["select * from jobs"]
        assert [job.id for job in app.jobs(ref="table:select")] == [handle.id]
    finally:
        app.close()


@pytest.mark.postgres
def test_migrate_reports_an_unreachable_server_in_one_line(pg_server: str) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = tasktrail("migrate", "--dsn", f"postgresql://nobody:s3cret@127.0.0.1:{port}/x")
    assert_one_line_error(result, 1, "cannot connect to PostgreSQL at postgresql://nobody:***@")
    assert "s3cret" not in result.stderr


def test_schema_for_a_bad_dsn_is_one_line() -> None:
    assert_one_line_error(tasktrail("schema", "--dsn", "mysql://x"), 1, "unsupported DSN scheme")
    assert_one_line_error(tasktrail("schema", "--dsn", "postgresql://["), 1, "cannot read DSN")
