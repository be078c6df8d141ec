"""Configuration: DSNs and the ``TASKTRAIL_*`` environment variables.

Precedence everywhere: an explicit argument (or command-line option), then the
environment variable, then the default.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, parse_qsl, quote, urlencode, urlsplit

from .errors import ConfigurationError

__all__ = [
    "DEFAULT_DSN",
    "DEFAULT_SCHEMA",
    "PostgresDsn",
    "SqliteDsn",
    "parse_dsn",
    "redact_dsn",
    "resolve_dsn",
    "validate_identifier",
]

DEFAULT_DSN = "sqlite:///tasktrail.db"
DEFAULT_SCHEMA = "tasktrail"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_SQLITE_OPTIONS = {"synchronous": {"normal", "full", "off"}}


@dataclass(frozen=True, slots=True)
class SqliteDsn:
    """``sqlite:///relative.db`` or ``sqlite:////absolute/path.db``."""

    path: Path
    synchronous: str = "normal"

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"


@dataclass(frozen=True, slots=True, repr=False)
class PostgresDsn:
    """``postgresql://user:password@host:port/dbname?schema=tasktrail``.

    ``schema`` is tasktrail's own query parameter; it is removed from the conninfo that
    is handed to psycopg.
    """

    conninfo: str
    schema: str = DEFAULT_SCHEMA

    @property
    def url(self) -> str:
        return redact_dsn(self.conninfo)

    def __repr__(self) -> str:
        # A repr ends up in tracebacks and error reporters that show local variables:
        # never with the password.
        return f"PostgresDsn(url={self.url!r}, schema={self.schema!r})"


def redact_dsn(dsn: str) -> str:
    """Hide the password of a DSN, for logs, errors and CLI output."""
    # "host:5432/db?x=a@b" has a port, not a password: an '@' further on is no user info.
    # Anything else up to the '@' is hidden, even characters a URL should have escaped.
    redacted = re.sub(r"(://[^:/@]*:)(?!\d*(?:[/?#]|$))[^@]*@", r"\1***@", dsn)
    return re.sub(r"(?i)(password=)[^&\s]*", r"\1***", redacted)


def validate_identifier(name: str, what: str = "schema name") -> str:
    """Return ``name`` if it is a plain lower-case SQL identifier, else raise.

    Only ``[a-z_][a-z0-9_]*`` up to 63 characters is accepted, so the name is safe to
    quote into DDL and never needs case folding.
    """
    # fullmatch: with match, "$" would also accept a trailing newline.
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ConfigurationError(
            f"invalid {what} {name!r}: use lower-case letters, digits and '_', "
            "starting with a letter or '_', at most 63 characters"
        )
    return name


def resolve_dsn(dsn: str | None) -> str:
    """The DSN to use: the argument, else ``TASKTRAIL_DSN``, else the SQLite default."""
    if dsn:
        return dsn
    return os.environ.get("TASKTRAIL_DSN") or DEFAULT_DSN


def parse_dsn(dsn: str, schema: str | None = None) -> SqliteDsn | PostgresDsn:
    """Parse and validate a DSN.

    Args:
        dsn: ``sqlite:///path.db`` or ``postgresql://…``.
        schema: PostgreSQL schema; overrides ``?schema=`` and ``TASKTRAIL_SCHEMA``.

    Raises:
        ConfigurationError: the DSN is malformed or of an unsupported kind.
    """
    if dsn is not None and not isinstance(dsn, str):
        raise ConfigurationError(
            f"a DSN is text such as sqlite:///path.db or postgresql://host/dbname, "
            f"got {type(dsn).__name__}"
        )
    if not dsn or not dsn.strip():
        raise ConfigurationError("empty DSN: use sqlite:///path.db or postgresql://host/dbname")
    scheme, sep, _rest = dsn.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ConfigurationError(
            f"cannot read DSN {redact_dsn(dsn)!r}: "
            "expected sqlite:///path.db or postgresql://host/dbname"
        )
    if scheme == "sqlite":
        return _parse_sqlite(dsn)
    if scheme in ("postgresql", "postgres"):
        return _parse_postgres(dsn, schema)
    raise ConfigurationError(
        f"unsupported DSN scheme {scheme!r} in {redact_dsn(dsn)!r}: "
        "tasktrail stores jobs in SQLite (sqlite:///path.db) or PostgreSQL (postgresql://…)"
    )


def _split(dsn: str) -> SplitResult:
    try:
        return urlsplit(dsn)
    except ValueError as exc:  # "postgresql://[" (an unclosed IPv6 address)
        raise ConfigurationError(f"cannot read DSN {redact_dsn(dsn)!r}: {exc}") from None


def _parse_sqlite(dsn: str) -> SqliteDsn:
    parts = _split(dsn)
    if parts.netloc:
        raise ConfigurationError(
            f"SQLite DSN {redact_dsn(dsn)!r} has a host part; write sqlite:///relative.db "
            "or sqlite:////absolute/path.db (three or four slashes)"
        )
    raw_path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if not raw_path or raw_path.endswith("/"):
        raise ConfigurationError(
            f"SQLite DSN {redact_dsn(dsn)!r} names no file: write sqlite:///path.db"
        )
    if "\x00" in raw_path:
        raise ConfigurationError("SQLite DSN contains a NUL character")
    options: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        allowed = _SQLITE_OPTIONS.get(key)
        if allowed is None:
            raise ConfigurationError(
                f"unknown SQLite DSN option {key!r}; known: {', '.join(sorted(_SQLITE_OPTIONS))}"
            )
        if value.lower() not in allowed:
            raise ConfigurationError(
                f"SQLite DSN option {key}={value!r}: expected one of {', '.join(sorted(allowed))}"
            )
        options[key] = value.lower()
    path = Path(raw_path).expanduser()
    return SqliteDsn(path=path.absolute(), **options)


def _parse_postgres(dsn: str, schema: str | None) -> PostgresDsn:
    parts = _split(dsn)
    try:
        _ = parts.port  # raises ValueError on a non-numeric port
    except ValueError:
        # Not urllib's message, nor chained: with a '/' in an unescaped password, what it
        # reads as the port is the password.
        raise ConfigurationError(
            f"bad port in DSN {redact_dsn(dsn)!r}: expected a number from 0 to 65535 "
            "(characters such as / ? # @ in a password must be %-escaped)"
        ) from None
    query = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(k, v) for k, v in query if k != "schema"]
    from_query = [v for k, v in query if k == "schema"]
    chosen = schema if schema is not None else (from_query[-1] if from_query else None)
    if chosen is None:
        chosen = os.environ.get("TASKTRAIL_SCHEMA")
    if chosen == "":
        raise ConfigurationError(
            "empty schema name: leave the option out for the default "
            f"({DEFAULT_SCHEMA!r}), or name one"
        )
    chosen = chosen or DEFAULT_SCHEMA
    validate_identifier(chosen)
    if chosen.startswith("pg_") or chosen == "information_schema":
        raise ConfigurationError(
            f"schema name {chosen!r} is reserved for PostgreSQL's own catalogs; name another"
        )
    # %20, not "+", for a space: libpq reads "+" as a plus ("options=-c role=x").
    conninfo = parts._replace(query=urlencode(kept, quote_via=quote)).geturl()
    return PostgresDsn(conninfo=conninfo, schema=chosen)
