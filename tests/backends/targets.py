"""The backends the contract suites run against, and how to run them against another.

The contract suites are the ``test_*contract.py`` modules of this folder: the Backend
contract, run against every target in turn. Their tests ask for

- ``backend``: a set-up backend on a new, empty database (afterwards every job in it must
  have a valid history);
- ``dsn``: that database's DSN, and ``backend_target.open(dsn)`` for another connection
  to it (another worker, a forked process);
- ``sql_dsn`` instead of ``dsn`` where they read or change the tables with plain SQL
  (sqlite3 or psycopg, ``helpers.query``): skipped, with the reason, for a target that
  declares no ``sql_dialect``.

Two targets are built in: ``sqlite`` and ``postgres``. A third backend's author writes one
module with a :class:`BackendTarget` (``tests/backends/example_target.py`` is one) and
runs the suites against it alone::

    pytest tests/backends/test_*contract.py --tasktrail-backend=mypackage.contract:TARGET

The option is repeatable and takes the built-in names too (``--tasktrail-backend=sqlite``);
it changes what the contract suites run against, nothing else. Without it they run
against the built-in targets, registered here the same way.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tasktrail.backends import Backend, open_backend

__all__ = [
    "BUILTIN",
    "OPTION",
    "BackendTarget",
    "is_contract_suite",
    "load_targets",
    "targets_for",
]

#: The command-line option that names the targets of the contract suites.
OPTION = "--tasktrail-backend"


@dataclass(frozen=True)
class BackendTarget:
    """A backend the contract suites can run against.

    Attributes:
        name: its name in test ids (``test_reserve[sqlite]``).
        database: makes a new, empty database for one test and yields its DSN; code
            after the ``yield`` runs after the test (to drop it). It gets the test's
            ``request``, to ask for other fixtures (``tmp_path``…).
        open: opens a backend on a DSN that ``database`` gave (``setup()`` is called
            on it by the ``backend`` fixture).
        sql_dialect: ``"sqlite"`` or ``"postgres"`` if its tables can be read and changed
            with plain SQL through sqlite3 or psycopg, as ``helpers.query`` does; None
            skips the tests that do.
        marks: marks of each of its tests (``pytest.mark.postgres`` for a server).
    """

    name: str
    database: Callable[[pytest.FixtureRequest], Iterator[str]]
    open: Callable[[str], Backend] = open_backend
    sql_dialect: str | None = None
    marks: tuple[Any, ...] = ()

    def param(self) -> Any:
        return pytest.param(self, id=self.name, marks=self.marks)


def _from_fixture(name: str) -> Callable[[pytest.FixtureRequest], Iterator[str]]:
    """A ``database`` that is the DSN fixture ``name`` (tests/conftest.py)."""

    def database(request: pytest.FixtureRequest) -> Iterator[str]:
        yield str(request.getfixturevalue(name))

    return database


SQLITE = BackendTarget("sqlite", _from_fixture("sqlite_dsn"), sql_dialect="sqlite")
POSTGRES = BackendTarget(
    "postgres", _from_fixture("pg_dsn"), sql_dialect="postgres", marks=(pytest.mark.postgres,)
)
BUILTIN = (SQLITE, POSTGRES)


def load_targets(specs: Iterable[str]) -> list[BackendTarget]:
    """The targets ``specs`` name: a built-in name, or ``module:attribute`` naming a
    :class:`BackendTarget` or a sequence of them.

    Raises:
        pytest.UsageError: a spec that names none.
    """
    builtin = {target.name: target for target in BUILTIN}
    found: list[BackendTarget] = []
    for spec in specs:
        if spec in builtin:
            found.append(builtin[spec])
            continue
        module_name, sep, attribute = spec.partition(":")
        if not sep or not module_name or not attribute:
            raise pytest.UsageError(
                f"{OPTION}={spec}: expected {' or '.join(builtin)}, or module:attribute"
            )
        try:
            value = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise pytest.UsageError(f"{OPTION}={spec}: {exc}") from exc
        targets = [value] if isinstance(value, BackendTarget) else value
        if not (
            isinstance(targets, list | tuple)
            and targets
            and all(isinstance(target, BackendTarget) for target in targets)
        ):
            raise pytest.UsageError(f"{OPTION}={spec} is not a BackendTarget (or a list of them)")
        found.extend(targets)
    return found


def is_contract_suite(path: Path) -> bool:
    """Whether the test module at ``path`` is one of the contract suites."""
    return (
        path.parent == Path(__file__).parent
        and path.name.startswith("test_")
        and path.name.endswith("_contract.py")
    )


def targets_for(config: pytest.Config, path: Path) -> list[BackendTarget]:
    """The targets the tests of the module at ``path`` run against: those the option
    names for a contract suite (the built-in ones without it), the built-in ones for the
    other tests that ask for a backend's DSN."""
    named = config.getoption(OPTION)
    if named and is_contract_suite(path):
        return load_targets(named)
    return list(BUILTIN)
