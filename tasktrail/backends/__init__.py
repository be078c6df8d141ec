"""Backends: where jobs live. :func:`open_backend` picks one from a DSN."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import PostgresDsn, parse_dsn
from ..errors import ConfigurationError
from .base import Backend, JobFilter, PruneReport, RecoveredJob, TaskStats

if TYPE_CHECKING:
    from ..config import SqliteDsn

__all__ = ["Backend", "JobFilter", "PruneReport", "RecoveredJob", "TaskStats", "open_backend"]


def open_backend(dsn: str | SqliteDsn | PostgresDsn, *, schema: str | None = None) -> Backend:
    """Open the backend a DSN names. The connection is made now, so errors show early.

    Raises:
        ConfigurationError: the DSN is malformed, or names PostgreSQL without the
            ``postgres`` extra installed.
        BackendUnavailable: the database cannot be opened or reached.
    """
    parsed = parse_dsn(dsn, schema) if isinstance(dsn, str) else dsn
    if isinstance(parsed, PostgresDsn):
        try:
            from .postgres import PostgresBackend
        except ImportError as exc:
            raise ConfigurationError(
                "PostgreSQL needs the postgres extra: pip install 'tasktrail[postgres]' "
                f"({exc})"
            ) from exc
        return PostgresBackend(parsed)
    from .sqlite import SqliteBackend

    return SqliteBackend(parsed)
