"""Shared fixtures: a fresh SQLite file, or a fresh PostgreSQL schema, per test.

A test that asks for ``dsn`` runs once per backend target (tests/backends/targets.py):
SQLite and PostgreSQL, or for the contract suites the backends ``--tasktrail-backend``
names, which is how a third backend runs them without a change here.

PostgreSQL tests use ``TASKTRAIL_TEST_PG_DSN`` (default
``postgresql://postgres@127.0.0.1:5432/test``). When that server is unreachable they
are skipped with the reason, except when ``CI`` is set: then they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from .backends.targets import OPTION, BackendTarget, load_targets, targets_for

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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        OPTION,
        action="append",
        default=[],
        metavar="NAME|MODULE:ATTRIBUTE",
        help="run the contract suites (tests/backends/test_*contract.py) against this "
        "backend only: sqlite, postgres, or a BackendTarget named module:attribute "
        "(see tests/backends/targets.py); repeatable",
    )


def pytest_configure(config: pytest.Config) -> None:
    load_targets(config.getoption(OPTION))  # a target that is not there: one error, at once


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that asks for a backend (``dsn``) runs once per target: the built-in ones,
    or for the contract suites those ``--tasktrail-backend`` names."""
    if "backend_target" in metafunc.fixturenames:
        targets = targets_for(metafunc.config, metafunc.definition.path)
        metafunc.parametrize("backend_target", [t.param() for t in targets], indirect=True)


@pytest.fixture
def backend_target(request: pytest.FixtureRequest) -> BackendTarget:
    """The backend under test (each in turn: see pytest_generate_tests)."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def dsn(request: pytest.FixtureRequest, backend_target: BackendTarget) -> Iterator[str]:
    """Each backend in turn: the same test runs on SQLite and on PostgreSQL (and, for the
    contract suites, on the backends ``--tasktrail-backend`` names)."""
    yield from backend_target.database(request)
