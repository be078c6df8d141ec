"""The PostgreSQL SQL files, rendered for the configured schema.

In ``tasktrail/sql/postgres/`` the word ``tasktrail`` names the schema (so the files run
as they are with ``psql -f``); for another schema it is replaced by that name, which
``config.validate_identifier`` has checked and which is double-quoted here.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import NamedTuple

from .._sql import queries, read_sql

__all__ = [
    "SCHEMA_VERSION",
    "Native",
    "migrations",
    "native",
    "native_queries",
    "render",
    "render_roles",
    "render_schema",
    "rendered_queries",
]

#: The schema version this code writes and reads (the highest migration).
SCHEMA_VERSION = 12
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


_COMMENT_LINE = re.compile(r"^[ \t]*--.*$", re.MULTILINE)


def render(text: str, schema: str) -> str:
    """Put the schema name where the SQL files say ``tasktrail``.

    Lines that are only a comment are prose: there only qualified names
    (``tasktrail.jobs``) change, so ``tasktrail migrate`` still names the command.
    """
    if schema == "tasktrail":
        return text
    quoted = f'"{schema}"'

    def code(part: str) -> str:
        part = part.replace("'tasktrail'", f"'{schema}'")
        return re.sub(r"\btasktrail\b", quoted, part)

    pieces: list[str] = []
    done = 0
    for comment in _COMMENT_LINE.finditer(text):
        pieces.append(code(text[done : comment.start()]))
        pieces.append(re.sub(r"\btasktrail(?=\.)", quoted, comment.group()))
        done = comment.end()
    pieces.append(code(text[done:]))
    return "".join(pieces)


def render_schema(schema: str) -> str:
    """The complete setup script for ``schema``."""
    script = render(read_sql("postgres", "schema.sql"), schema)
    if schema == "tasktrail":
        return script
    return f'-- Rendered for the schema "{schema}": every object below is created there.\n{script}'


def render_roles(schema: str) -> str:
    """The least-privilege roles script (``roles.sql``, see docs/security.md) for ``schema``."""
    script = render(read_sql("postgres", "roles.sql"), schema)
    if schema == "tasktrail":
        return script
    return f'-- Rendered for the schema "{schema}".\n{script}'


def migrations() -> list[tuple[int, str]]:
    """``(version, file name)`` of every migration shipped, in order."""
    folder = (
        resources.files("tasktrail").joinpath("sql").joinpath("postgres").joinpath("migrations")
    )
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name))
    return sorted(found)


@cache
def rendered_queries(schema: str) -> dict[str, str]:
    """The named statements of ``queries.sql`` for ``schema``."""
    return {name: render(text, schema) for name, text in queries("postgres").items()}


class Native(NamedTuple):
    """A statement with PostgreSQL's own placeholders, and the parameter of each."""

    text: str
    names: tuple[str, ...]  # the parameter that $1, $2, ... stand for

    def values(self, params: dict[str, object]) -> list[object]:
        return [params[name] for name in self.names]


_PLACEHOLDER = re.compile(r"%\(([A-Za-z_][A-Za-z0-9_]*)\)s|%%|%")


def native(statement: str) -> Native:
    """``statement`` with ``$1``, ``$2``... for its ``%(name)s`` placeholders (one number
    per name, however often it appears) and ``%`` for ``%%``.

    Run through a ``psycopg.RawCursor``, the text goes to the server as it is. psycopg
    converts ``%(name)s`` placeholders on every call of a statement longer than 4,096
    characters (it caches only shorter ones): for the worker's ``exchange`` that cost
    about 0.12 ms of CPU on each round trip.
    """
    names: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            if match.group() == "%%":
                return "%"
            raise ValueError(f"a lone % in a statement: {statement[:80]!r}...")
        return f"${names.setdefault(name, len(names) + 1)}"

    text = _PLACEHOLDER.sub(number, statement)
    return Native(text, tuple(names))


@cache
def native_queries(schema: str) -> dict[str, Native]:
    """:func:`rendered_queries` in :func:`native` form."""
    return {name: native(text) for name, text in rendered_queries(schema).items()}
