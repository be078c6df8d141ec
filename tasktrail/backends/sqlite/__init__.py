"""The embedded backend: one SQLite file on one host, no server."""

from __future__ import annotations

from .backend import SCHEMA_VERSION, SqliteBackend

__all__ = ["SCHEMA_VERSION", "SqliteBackend"]
