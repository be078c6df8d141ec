"""tasktrail in a Django project (the ``django`` extra).

Add ``"tasktrail.contrib.django"`` to ``INSTALLED_APPS``, then::

    from tasktrail.contrib.django import app

    @app.task
    def refresh(website_id: int) -> None: ...

``app`` is an :class:`~tasktrail.App` on the database of Django's ``default`` alias (or
the one named by ``TASKTRAIL["database"]``), PostgreSQL through psycopg 3 or SQLite.
Inside ``transaction.atomic()`` an enqueue joins Django's transaction with no extra
argument: rolled back, the job was never there. ``manage.py migrate`` installs and
upgrades tasktrail's tables; ``manage.py tasktrail <command>`` runs the CLI (``worker``,
``jobs``, ``show``, ``maintain``, ``dashboard``…) on this app, and the worker's forked
processes run the tasks with Django set up. Tasks are found in each installed app's
``tasks`` module.

Settings (all optional)::

    TASKTRAIL = {
        "database": "default",   # the alias whose database holds the jobs
        "schema": "tasktrail",   # PostgreSQL schema of tasktrail's tables
        "dsn": None,             # or a DSN of its own (then enqueues never join Django's)
    }
"""

from __future__ import annotations

from typing import Any

from ...app import App
from ...errors import ConfigurationError

__all__ = ["DjangoApp", "app", "settings_dsn"]


def _settings() -> dict[str, Any]:
    from django.conf import settings

    options = dict(getattr(settings, "TASKTRAIL", None) or {})
    unknown = sorted(set(options) - {"database", "schema", "dsn"})
    if unknown:
        raise ConfigurationError(
            f"settings.TASKTRAIL has unknown keys {', '.join(unknown)}; "
            "it takes database, schema and dsn"
        )
    return options


def settings_dsn(alias: str, databases: dict[str, Any] | None = None) -> str:
    """The tasktrail DSN of Django's database ``alias`` (of ``settings.DATABASES``, or
    of ``databases``)."""
    from urllib.parse import quote

    if databases is None:
        from django.conf import settings

        databases = settings.DATABASES
    if alias not in databases:
        raise ConfigurationError(
            f"TASKTRAIL['database'] names {alias!r}, which is not in DATABASES "
            f"({', '.join(sorted(databases)) or 'none'})"
        )
    db = databases[alias]
    engine = str(db.get("ENGINE", ""))
    if engine.endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    if not engine.endswith("postgresql"):
        raise ConfigurationError(
            f"the {alias!r} database's ENGINE is {engine!r}: tasktrail runs on "
            "django.db.backends.postgresql (with psycopg 3) or sqlite3"
        )
    user = quote(str(db.get("USER") or ""), safe="")
    password = quote(str(db.get("PASSWORD") or ""), safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = str(db.get("HOST") or "")
    port = f":{db['PORT']}" if db.get("PORT") else ""
    name = quote(str(db.get("NAME") or ""), safe="")
    if host.startswith("/"):  # a Unix socket's directory
        socket = f"?host={quote(host, safe='')}" + (f"&port={db['PORT']}" if port else "")
        return f"postgresql://{auth}/{name}{socket}"
    return f"postgresql://{auth}{host}{port}/{name}"


class DjangoApp(App):
    """An App on the database Django's settings name, whose enqueues join Django's
    transaction inside ``transaction.atomic()``."""

    def __init__(self) -> None:
        options = _settings()
        #: The Django database alias whose transactions enqueues join.
        self.alias = str(options.get("database") or "default")
        own_dsn = options.get("dsn")
        #: The DSN of that alias's database; None when the settings name a DSN of its own.
        self.django_dsn = None if own_dsn else settings_dsn(self.alias)
        super().__init__(
            str(own_dsn or self.django_dsn),
            schema=str(options["schema"]) if options.get("schema") else None,
        )

    def transaction_connection(self) -> Any:
        """Django's driver connection while ``transaction.atomic()`` is open on the
        app's database alias; otherwise None: the app's own connection (also when it
        was pointed at another database, as the CLI's ``--dsn`` does)."""
        if self.dsn != self.django_dsn:
            return None
        from django.db import connections

        connection = connections[self.alias]
        if not connection.in_atomic_block:
            return None
        connection.ensure_connection()
        return connection.connection


#: The project's App. Declare tasks on it: ``@app.task``.
app = DjangoApp()
