"""Fixtures of the backend contract suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tasktrail.backends import Backend, open_backend

from .helpers import history_problems


@pytest.fixture
def backend(dsn: str) -> Iterator[Backend]:
    """A set-up backend on a new database.

    Afterwards every job in it must have a valid history (a lifecycle path ending in its
    current status), whatever the test did.
    """
    yield from _checked_backend(dsn)


@pytest.fixture
def pg_backend(pg_dsn: str) -> Iterator[Backend]:
    """The same, on PostgreSQL only: for what only PostgreSQL promises."""
    yield from _checked_backend(pg_dsn)


def _checked_backend(dsn: str) -> Iterator[Backend]:
    opened = open_backend(dsn)
    try:
        opened.setup()
        yield opened
        problems = history_problems(opened)
    finally:
        opened.close()
    assert not problems, f"invalid job histories: {problems}"
