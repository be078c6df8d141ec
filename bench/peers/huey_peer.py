"""Huey: ``SqliteHuey`` (embedded) and ``SqlHuey`` on PostgreSQL (huey.contrib.sql_huey).

Workers are ``huey_consumer bench.apps.huey_app.huey -k process -w N`` subprocesses. The
consumer polls its storage: a worker that finds the queue empty waits ``-d`` seconds, then
``-b`` times longer after each empty poll, up to ``-m``. Throughput does not depend on it
(a busy worker polls again at once); latency does, and the default polling (``-d 0.1 -b 1.15
-m 10``) is what is measured unless the driver is built with other values.

A task is done when its result is in huey's result store (tasks return a value): the driver
counts those rows through huey's own API (``result_count``). Bulk enqueue is
``task.map(...)``, huey's documented way to enqueue many (one INSERT each).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import tempfile
import time
from pathlib import Path

from bench.peers import _procs
from bench.peers.base import Latency, Peer


class _HueyPeer(Peer):
    def __init__(
        self,
        delay: float = 0.1,
        backoff: float = 1.15,
        max_delay: float = 10.0,
        timeout: float = 900.0,
    ) -> None:
        self.delay = delay
        self.backoff = backoff
        self.max_delay = max_delay
        self.timeout = timeout
        self.huey = None
        self.tasks = None

    # -- per store --------------------------------------------------------------------

    def _location(self) -> str:
        raise NotImplementedError

    def _create(self) -> None:
        """Create the empty store."""

    def _destroy(self) -> None:
        """Remove the store."""

    def _store_configuration(self) -> str:
        raise NotImplementedError

    # -- plumbing ---------------------------------------------------------------------

    def _open(self) -> None:
        from bench.apps import huey_app

        self.huey = huey_app.make_huey(self.store, self._location())
        self.tasks = huey_app.register(self.huey)

    def _close(self) -> None:
        if self.huey is not None:
            self.huey.storage.close()
            self.huey = self.tasks = None

    def _flush(self) -> None:
        self.huey.flush()

    def _worker_argv(self, processes: int) -> list[str]:
        return [
            _procs.tool("huey_consumer"),
            "bench.apps.huey_app.huey",
            "--worker-type=process",
            f"--workers={processes}",
            f"--delay={self.delay}",
            f"--backoff={self.backoff}",
            f"--max-delay={self.max_delay}",
            "--no-periodic",
            "--quiet",
        ]

    def _start_workers(self, workers: int, processes: int) -> _procs.Workers:
        pool = _procs.Workers({"BENCH_HUEY_STORE": self.store, **self._env()})
        for _ in range(workers):
            pool.start(self._worker_argv(processes))
        return pool

    def _env(self) -> dict[str, str]:
        key = "BENCH_HUEY_SQLITE" if self.store == "sqlite" else "BENCH_HUEY_PG"
        return {key: self._location()}

    def _check_queued(self, count: int) -> None:
        queued = self.huey.pending_count()
        if queued != count:
            raise RuntimeError(f"{queued} tasks queued, expected {count}")

    def _wait_done(self, results, count: int, pool: _procs.Workers, what: str) -> float:
        """Poll until ``count`` results are stored. The last task enqueued is among the last
        to finish, so the full count is only taken once its result is there."""
        storage, last = self.huey.storage, list(results)[-1].id

        def done() -> bool:
            return storage.has_data_for_key(last) and self.huey.result_count() >= count

        return _procs.wait_for(done, self.timeout, pool, interval=0.005, what=what)

    # -- Peer -------------------------------------------------------------------------

    def configuration(self) -> str:
        return (
            f"huey {importlib.metadata.version('huey')}; {self._store_configuration()}; "
            f"huey_consumer -k process -w <processes> -d {self.delay} -b {self.backoff} "
            f"-m {self.max_delay} -n -q; tasks return a value (result store); "
            f"single: task(); bulk: task.map()"
        )

    def setup(self) -> None:
        self._create()
        self._open()

    def teardown(self) -> None:
        self._close()
        self._destroy()

    def enqueue_single(self, count: int) -> float:
        self._flush()
        noop = self.tasks.noop
        noop()  # connect before timing
        self._flush()
        start = time.perf_counter()
        for _ in range(count):
            noop()
        elapsed = time.perf_counter() - start
        self._check_queued(count)
        self._flush()
        return count / elapsed

    def enqueue_bulk(self, count: int) -> float:
        self._flush()
        self.tasks.noop()
        self._flush()
        start = time.perf_counter()
        self.tasks.noop.map([()] * count)
        elapsed = time.perf_counter() - start
        self._check_queued(count)
        self._flush()
        return count / elapsed

    def drain(self, count: int, workers: int, processes: int) -> float:
        self._flush()
        results = self.tasks.noop.map([()] * count)
        self._check_queued(count)
        start = time.perf_counter()
        with self._start_workers(workers, processes) as pool:
            end = self._wait_done(results, count, pool, "Huey drain")
        self._flush()
        return count / (end - start)

    def latency(self, count: int, interval: float) -> Latency:
        self._flush()
        stamp = self.tasks.stamp
        with self._start_workers(1, 1) as pool:
            warm = stamp()  # the worker is idle once this ran
            self._wait_done([warm], 1, pool, "Huey warm-up")
            # Let the idle worker's polling settle into its steady rhythm.
            time.sleep(max(1.0, 2 * self.delay))
            enqueued: dict[int, float] = {}
            handles = []
            due = _procs.paced(interval)
            for i in range(count):
                due(i)
                enqueued[i] = time.time()
                handles.append(stamp())
            self._wait_done(handles, count + 1, pool, "Huey latency")
        started = {i: float(h.get(preserve=True)) for i, h in enumerate(handles)}
        self._flush()
        return _procs.latency_of(enqueued, started)

    def sleep_jobs(self, count: int, seconds: float, processes: int) -> float:
        self._flush()
        results = self.tasks.nap.map([(seconds,)] * count)
        start = time.perf_counter()
        with self._start_workers(1, processes) as pool:
            end = self._wait_done(results, count, pool, "Huey sleep jobs")
        self._flush()
        return end - start


class SqliteHueyPeer(_HueyPeer):
    """``SqliteHuey`` on a temporary file (its defaults: WAL, SQLite's default fsync)."""

    name = "SqliteHuey"
    store = "sqlite"

    def __init__(self, directory: str | None = None, **options) -> None:
        super().__init__(**options)
        self.directory = directory
        self._dir: Path | None = None

    def _location(self) -> str:
        return str(self._dir / "huey.db")

    def _create(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="bench-huey-", dir=self.directory))

    def _destroy(self) -> None:
        if self._dir is not None:
            for path in self._dir.iterdir():
                path.unlink()
            self._dir.rmdir()
            self._dir = None

    def _store_configuration(self) -> str:
        import sqlite3

        return f"SqliteHuey on a local file (SQLite {sqlite3.sqlite_version}, journal_mode=wal, default synchronous)"


class PostgresHueyPeer(_HueyPeer):
    """``huey.contrib.sql_huey.SqlHuey`` (peewee, psycopg 3) on a database of its own."""

    name = "Huey (PostgreSQL)"
    store = "postgresql"

    def __init__(self, dsn: str | None = None, **options) -> None:
        super().__init__(**options)
        if dsn is None:
            from bench import config

            dsn = config.PG_DSN
        self.dsn = dsn
        self.dbname = f"bench_huey_{os.getpid()}"

    def _admin(self):
        import psycopg

        return psycopg.connect(self.dsn, autocommit=True)

    def _location(self) -> str:
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(self.dsn)
        user = info.get("user", "postgres")
        password = f":{info['password']}" if info.get("password") else ""
        host = info.get("host", "127.0.0.1")
        port = info.get("port", 5432)
        return f"psycopg3://{user}{password}@{host}:{port}/{self.dbname}"

    def _create(self) -> None:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.dbname}"')

    def _destroy(self) -> None:
        with contextlib.suppress(Exception), self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')

    def _store_configuration(self) -> str:
        with self._admin() as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
        peewee = importlib.metadata.version("peewee")
        return (
            f"SqlHuey (huey.contrib.sql_huey, peewee {peewee} Psycopg3Database) on "
            f"PostgreSQL {version}, its own database; dequeue SELECT ... FOR UPDATE SKIP LOCKED"
        )
