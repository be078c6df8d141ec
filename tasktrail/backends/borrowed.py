"""A caller's connection, for ``connection=``: the jobs join the caller's transaction.

The backends take their driver's connection (psycopg 3, sqlite3). A SQLAlchemy
``Connection`` or ``Session`` is unwrapped here to the driver connection under it, with
its transaction begun the way SQLAlchemy would begin it for a statement of its own, so
the jobs exist if and only if the caller commits. SQLAlchemy is imported only when such
an object is passed.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidArguments

__all__ = ["driver_connection"]

#: SQLAlchemy's name for each backend's driver, and the URL that selects it.
_DRIVERS = {"postgres": ("psycopg", "postgresql+psycopg://"), "sqlite": ("pysqlite", "sqlite://")}


def driver_connection(connection: Any, backend: str) -> Any:
    """The driver connection under ``connection`` if it is SQLAlchemy's (a Connection,
    or a Session whose transaction it joins), else ``connection`` itself. ``backend``
    (``"postgres"`` or ``"sqlite"``) names the driver it must use."""
    if not any(cls.__module__.startswith("sqlalchemy.") for cls in type(connection).__mro__):
        return connection
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session, scoped_session

    if isinstance(connection, scoped_session):
        connection = connection()  # the session of this scope (thread, request)
    if isinstance(connection, Session):
        connection = connection.connection()  # begins the session's transaction if need be
    elif isinstance(connection, Connection):
        if not connection.in_transaction():
            connection.begin()  # as SQLAlchemy's autobegin would for a statement
    else:
        raise InvalidArguments(
            f"connection= takes a SQLAlchemy Connection or Session, got {type(connection).__name__}"
        )
    driver, url = _DRIVERS[backend]
    if connection.dialect.driver != driver:
        raise InvalidArguments(
            f"connection= is a SQLAlchemy connection through {connection.dialect.driver}; "
            f"tasktrail's {backend} backend needs {driver} (an engine made with {url}…)"
        )
    return connection.connection.driver_connection
