"""The PostgreSQL backend (psycopg 3)."""

from __future__ import annotations

from .backend import PostgresBackend
from .sql import SCHEMA_VERSION, migrations, render_schema

__all__ = ["SCHEMA_VERSION", "PostgresBackend", "migrations", "render_schema"]
