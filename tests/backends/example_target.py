"""A backend registered for the contract suites the way a third backend's author would do
it, in one module: here SQLite opened by its own class with options of its own, on a DSN
of another form (with a query string)::

    pytest tests/backends/test_*contract.py \\
        --tasktrail-backend=tests.backends.example_target:TARGET

``tests/backends/test_targets.py`` checks that every contract test is collected for it and
runs a few of them so.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tasktrail.backends import Backend
from tasktrail.backends.sqlite import SqliteBackend
from tasktrail.config import SqliteDsn, parse_dsn

from .targets import BackendTarget


def database(request: pytest.FixtureRequest) -> Iterator[str]:
    """A new SQLite file per test, synced fully at each commit."""
    path = request.getfixturevalue("tmp_path") / "example.db"
    yield f"sqlite:///{path}?synchronous=full"
    # nothing to drop: the test's temporary directory goes with it


def open_example(dsn: str) -> Backend:
    parsed = parse_dsn(dsn)
    assert isinstance(parsed, SqliteDsn), dsn
    return SqliteBackend(parsed, busy_timeout=10.0)


TARGET = BackendTarget("sqlite-example", database, open=open_example, sql_dialect="sqlite")
