"""DSN parsing, redaction, identifier validation and the TASKTRAIL_* precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasktrail.config import (
    DEFAULT_DSN,
    DEFAULT_SCHEMA,
    PostgresDsn,
    SqliteDsn,
    parse_dsn,
    redact_dsn,
    resolve_dsn,
    validate_identifier,
)
from tasktrail.errors import ConfigurationError


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKTRAIL_DSN", raising=False)
    monkeypatch.delenv("TASKTRAIL_SCHEMA", raising=False)


# -- SQLite ---------------------------------------------------------------------------


def test_sqlite_absolute_path() -> None:
    parsed = parse_dsn("sqlite:////var/lib/app/jobs.db")
    assert parsed == SqliteDsn(path=Path("/var/lib/app/jobs.db"))
    assert parsed.synchronous == "normal"
    assert parsed.url == "sqlite:////var/lib/app/jobs.db"


def test_sqlite_relative_path_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    parsed = parse_dsn("sqlite:///data/jobs.db")
    assert isinstance(parsed, SqliteDsn)
    assert parsed.path == tmp_path / "data" / "jobs.db"


def test_sqlite_home_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    parsed = parse_dsn("sqlite:///~/jobs.db")
    assert isinstance(parsed, SqliteDsn)
    assert parsed.path == tmp_path / "jobs.db"


def test_scheme_is_case_insensitive() -> None:
    assert isinstance(parse_dsn("SQLite:////tmp/x.db"), SqliteDsn)
    assert isinstance(parse_dsn("PostgreSQL://host/db"), PostgresDsn)


@pytest.mark.parametrize("value", ["full", "OFF", "Normal"])
def test_sqlite_synchronous_option(value: str) -> None:
    parsed = parse_dsn(f"sqlite:////tmp/x.db?synchronous={value}")
    assert isinstance(parsed, SqliteDsn)
    assert parsed.synchronous == value.lower()


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("sqlite://host/jobs.db", "has a host part"),
        ("sqlite:///", "names no file"),
        ("sqlite:////", "names no file"),
        ("sqlite:////tmp/dir/", "names no file"),
        ("sqlite:////tmp/x.db?synchronous=sometimes", "expected one of full, normal, off"),
        ("sqlite:////tmp/x.db?journal_mode=delete", "unknown SQLite DSN option 'journal_mode'"),
        ("sqlite:////tmp/x\x00.db", "NUL"),
    ],
)
def test_bad_sqlite_dsns(dsn: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_dsn(dsn)


# -- PostgreSQL -----------------------------------------------------------------------


def test_postgres_defaults_to_the_tasktrail_schema() -> None:
    parsed = parse_dsn("postgresql://user:secret@db.example:5433/app")
    assert parsed == PostgresDsn(
        conninfo="postgresql://user:secret@db.example:5433/app", schema=DEFAULT_SCHEMA
    )
    assert parsed.url == "postgresql://user:***@db.example:5433/app"


def test_postgres_short_scheme() -> None:
    assert isinstance(parse_dsn("postgres://host/db"), PostgresDsn)


def test_schema_query_parameter_is_taken_out_of_the_conninfo() -> None:
    parsed = parse_dsn("postgresql://host/db?sslmode=require&schema=jobs&application_name=x")
    assert isinstance(parsed, PostgresDsn)
    assert parsed.schema == "jobs"
    assert parsed.conninfo == "postgresql://host/db?sslmode=require&application_name=x"


def test_last_schema_parameter_wins() -> None:
    parsed = parse_dsn("postgresql://host/db?schema=one&schema=two")
    assert isinstance(parsed, PostgresDsn)
    assert parsed.schema == "two"
    assert parsed.conninfo == "postgresql://host/db"


def test_schema_precedence_argument_then_query_then_environment_then_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def schema_of(dsn: str, schema: str | None = None) -> str:
        parsed = parse_dsn(dsn, schema)
        assert isinstance(parsed, PostgresDsn)
        return parsed.schema

    assert schema_of("postgresql://h/db") == "tasktrail"
    monkeypatch.setenv("TASKTRAIL_SCHEMA", "from_env")
    assert schema_of("postgresql://h/db") == "from_env"
    assert schema_of("postgresql://h/db?schema=from_query") == "from_query"
    assert schema_of("postgresql://h/db?schema=from_query", "from_arg") == "from_arg"


def test_bad_schema_from_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKTRAIL_SCHEMA", "Bad-Schema")
    with pytest.raises(ConfigurationError, match="invalid schema name 'Bad-Schema'"):
        parse_dsn("postgresql://h/db")


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("postgresql://host:port/db", "bad port"),
        ("postgresql://host:99999/db", "bad port"),
        ("postgresql://h/db?schema=drop%20table", "invalid schema name"),
        ("postgresql://h/db?schema=public%0A", "invalid schema name"),
        ("mysql://h/db", "unsupported DSN scheme 'mysql'"),
        ("jobs.db", "cannot read DSN"),
        ("", "empty DSN"),
        ("   ", "empty DSN"),
    ],
)
def test_bad_dsns(dsn: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_dsn(dsn)


def test_errors_never_show_the_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_dsn("postgresql://me:hunter2@host:nope/db")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        parse_dsn("mysql://me:hunter2@host/db")
    assert "hunter2" not in str(info.value)


def test_non_string_dsn_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="empty DSN"):
        parse_dsn(None)  # type: ignore[arg-type]


# -- redaction ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://u:secret@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:s%40cr%2Fet@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://:secret@h/db", "postgresql://:***@h/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        (
            "postgresql://h/db?password=secret&sslmode=require",
            "postgresql://h/db?password=***&sslmode=require",
        ),
        ("host=h PASSWORD=secret dbname=x", "host=h PASSWORD=*** dbname=x"),
        ("sqlite:////tmp/jobs.db", "sqlite:////tmp/jobs.db"),
        # Unescaped characters in a password are hidden too; a port is not a password.
        ("postgresql://u:pa/ss?#@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:123456@h/db", "postgresql://u:***@h/db"),
        (
            "postgresql://h:5432/db?application_name=me@work",
            "postgresql://h:5432/db?application_name=me@work",
        ),
    ],
)
def test_redact_dsn(dsn: str, shown: str) -> None:
    assert redact_dsn(dsn) == shown


# -- identifiers ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tasktrail", "_x", "a1_b2", "a" * 63])
def test_valid_identifiers(name: str) -> None:
    assert validate_identifier(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "Tasktrail", "1abc", "a-b", "a b", 'a"b', "a;drop", "a" * 64, "tasktrail\n", "é", 5],
)
def test_invalid_identifiers(name: object) -> None:
    with pytest.raises(ConfigurationError, match="invalid table prefix"):
        validate_identifier(name, "table prefix")  # type: ignore[arg-type]


# -- resolve_dsn ----------------------------------------------------------------------


def test_resolve_dsn_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_dsn(None) == DEFAULT_DSN == "sqlite:///tasktrail.db"
    monkeypatch.setenv("TASKTRAIL_DSN", "postgresql://env/db")
    assert resolve_dsn(None) == "postgresql://env/db"
    assert resolve_dsn("") == "postgresql://env/db"
    assert resolve_dsn("sqlite:///explicit.db") == "sqlite:///explicit.db"


def test_empty_environment_variable_falls_back_to_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKTRAIL_DSN", "")
    assert resolve_dsn(None) == DEFAULT_DSN
