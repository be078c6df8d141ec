"""Backends: where jobs live. :func:`open_backend` picks one from a DSN."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config import PostgresDsn, parse_dsn
from ..errors import ConfigurationError
from .base import (
    Activity,
    Backend,
    Exchange,
    JobFilter,
    PruneReport,
    RecoveredJob,
    TaskStats,
)

if TYPE_CHECKING:
    from ..config import SqliteDsn

__all__ = [
    "Activity",
    "Backend",
    "Exchange",
    "JobFilter",
    "PruneReport",
    "RecoveredJob",
    "TaskStats",
    "open_backend",
    "setup_sql",
]


def _postgres_module() -> Any:
    try:
        from . import postgres
    except ImportError as exc:
        raise ConfigurationError(
            f"PostgreSQL needs the postgres extra: pip install 'tasktrail[postgres]' ({exc})"
        ) from exc
    return postgres


def setup_sql(dsn: SqliteDsn | PostgresDsn) -> str:
    """The setup SQL script for a database, as a DBA would run it (nothing is opened)."""
    if isinstance(dsn, PostgresDsn):
        return str(_postgres_module().render_schema(dsn.schema))
    from ._sql import read_sql

    return read_sql("sqlite", "schema.sql")


def open_backend(dsn: str | SqliteDsn | PostgresDsn, *, schema: str | None = None) -> Backend:
    """Open the backend a DSN names. The connection is made now, so errors show early.

    Raises:
        ConfigurationError: the DSN is malformed, or names PostgreSQL without the
            ``postgres`` extra installed.
        BackendUnavailable: the database cannot be opened or reached.
    """
    parsed = parse_dsn(dsn, schema) if isinstance(dsn, str) else dsn
    if isinstance(parsed, PostgresDsn):
        backend: Backend = _postgres_module().PostgresBackend(parsed)
        return backend
    from .sqlite import SqliteBackend

    return SqliteBackend(parsed)
