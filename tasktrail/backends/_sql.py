"""Loads the SQL files shipped in ``tasktrail/sql/<dialect>/``.

A query file holds named statements, each introduced by a ``-- name: <name>`` line,
so a DBA reads the same text the code runs.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

__all__ = ["queries", "read_sql"]

_NAME = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def read_sql(dialect: str, filename: str) -> str:
    """The text of ``tasktrail/sql/<dialect>/<filename>``."""
    return (
        resources.files("tasktrail")
        .joinpath("sql")
        .joinpath(dialect)
        .joinpath(filename)
        .read_text("utf-8")
    )


@cache
def queries(dialect: str, filename: str = "queries.sql") -> dict[str, str]:
    """The named statements of a query file, by name."""
    text = read_sql(dialect, filename)
    parts = _NAME.split(text)
    named: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in named:
            raise ValueError(f"query {name!r} is defined twice in {dialect}/{filename}")
        named[name] = body.strip().rstrip(";")
    return named
