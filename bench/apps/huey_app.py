"""Huey tasks for the benchmark (``huey_consumer bench.apps.huey_app.huey``).

The consumer's storage comes from the environment, set by :mod:`bench.peers.huey_peer`:
``BENCH_HUEY_STORE`` is ``sqlite`` (``SqliteHuey`` on the file ``BENCH_HUEY_SQLITE``) or
``postgresql`` (``huey.contrib.sql_huey.SqlHuey`` through peewee's psycopg 3 driver on the
database URL ``BENCH_HUEY_PG``). The driver builds its own instance with :func:`make_huey`
and :func:`register` (the tasks are known by name: module and function). Tasks return a
value so that huey keeps it in its result store: a finished task is a row there, which the
driver counts.
"""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

from huey import Huey, SqliteHuey

NAME = "bench"


def make_huey(store: str | None = None, location: str | None = None) -> Huey:
    store = store or os.environ.get("BENCH_HUEY_STORE", "sqlite")
    if store == "sqlite":
        return SqliteHuey(NAME, filename=location or os.environ["BENCH_HUEY_SQLITE"])
    if store == "postgresql":
        from huey.contrib.sql_huey import SqlHuey

        return SqlHuey(NAME, database=location or os.environ["BENCH_HUEY_PG"])
    raise ValueError(f"BENCH_HUEY_STORE={store!r}: expected sqlite or postgresql")


def register(huey: Huey) -> SimpleNamespace:
    """Register the benchmark's tasks on ``huey``; return them by name."""

    @huey.task()
    def noop() -> int:
        return 1

    @huey.task()
    def stamp() -> float:
        return time.time()

    @huey.task()
    def nap(seconds: float) -> int:
        time.sleep(seconds)
        return 1

    return SimpleNamespace(noop=noop, stamp=stamp, nap=nap)


if os.environ.get("BENCH_HUEY_STORE"):  # in the consumer
    huey = make_huey()
    tasks = register(huey)
