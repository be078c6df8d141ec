"""Fixtures of the backend contract suite (the targets it runs against: targets.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tasktrail.backends import Backend, open_backend

from .helpers import history_problems
from .targets import BackendTarget


@pytest.fixture
def backend(dsn: str, backend_target: BackendTarget) -> Iterator[Backend]:
    """A set-up backend on a new database.

    Afterwards every job in it must have a valid history (a lifecycle path ending in its
    current status), whatever the test did.
    """
    yield from _checked_backend(dsn, backend_target.open)


@pytest.fixture
def pg_backend(pg_dsn: str) -> Iterator[Backend]:
    """The same, on PostgreSQL only: for what only PostgreSQL promises."""
    yield from _checked_backend(pg_dsn, open_backend)


@pytest.fixture
def sql_dsn(dsn: str, backend_target: BackendTarget) -> str:
    """``dsn``, for a test that reads or changes the backend's tables with plain SQL
    (sqlite3 or psycopg: ``helpers.query``); skipped for a target without such tables."""
    if backend_target.sql_dialect is None:
        pytest.skip(f"{backend_target.name} declares no SQL dialect to read its tables with")
    return dsn


def _checked_backend(dsn: str, opener: Callable[[str], Backend]) -> Iterator[Backend]:
    opened = opener(dsn)
    try:
        opened.setup()
        yield opened
        problems = history_problems(opened)
    finally:
        opened.close()
    assert not problems, f"invalid job histories: {problems}"
