"""PGQueuer on PostgreSQL, driven with its own API.

- Schema: ``Queries.install()`` (what ``pgq install`` runs), default durability
  ("durable": every table logged), in a throw-away database.
- Enqueue: ``Queries.enqueue(entrypoint, payload)`` (one job, one transaction) and
  ``Queries.enqueue([...], [...], [...])`` with lists (one statement for many jobs).
- Workers: real subprocesses, ``python -m bench.apps.pgqueuer_app --batch-size B``, i.e.
  ``pgqueuer.run(create_pgqueuer, batch_size=B)`` as ``pgq run`` does (the ``pgq run`` CLI
  itself fails to start in pgqueuer 1.6.0, see bench/apps/pgqueuer_app.py), asyncpg driver. A PGQueuer worker is one asyncio process (jobs of a
  batch run as tasks in it); its way to use more cores is more ``pgq run`` processes, so
  "W workers x P processes" is W*P processes. The I/O-like scenario's "P processes" is
  one process with ``--max-concurrent-tasks P`` (and ``--batch-size P/2``, the largest
  it accepts), its nearest equivalent; the mixed scenario's "W workers x P processes"
  is W such processes.
- Drained: the queue table ``pgqueuer`` is empty (finished jobs are deleted from it and
  logged) and ``pgqueuer_log`` holds ``count`` "successful" rows; the end time is the last
  such row's ``created``, the start the moment the first worker process is spawned.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from bench.peers import pgutil
from bench.peers.base import Latency, Peer

WORKER_MODULE = "bench.apps.pgqueuer_app"

#: ``--batch-size`` of each worker process (jobs claimed per dequeue).
BATCH_SIZE = 50
#: Driver of the worker processes (see bench/apps/pgqueuer_app.py).
DRIVER = "asyncpg"
#: Jobs per ``Queries.enqueue`` call for bulk enqueue and pre-enqueue.
ENQUEUE_BATCH = 10_000

RESET = "TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics RESTART IDENTITY"
REMAINING = "SELECT count(*) FROM pgqueuer"
SUCCEEDED = "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'"
LAST_SUCCEEDED = (
    "SELECT extract(epoch FROM max(created))::float8 FROM pgqueuer_log WHERE status = 'successful'"
)
FIRST_PICKED = (
    "SELECT extract(epoch FROM min(created))::float8 FROM pgqueuer_log WHERE status = 'picked'"
)


class PgQueuerPeer(Peer):
    name = "PGQueuer"
    store = "postgresql"

    def __init__(
        self,
        dsn: str | None = None,
        batch_size: int = BATCH_SIZE,
        driver: str = DRIVER,
        enqueue_batch: int = ENQUEUE_BATCH,
    ) -> None:
        self.dsn = dsn
        self.batch_size = batch_size
        self.driver = driver
        self.enqueue_batch = enqueue_batch
        self.db: pgutil.ThrowawayDatabase | None = None
        #: Details of the last drain/sleep run (seconds), for the report.
        self.details: dict[str, Any] = {}

    def configuration(self) -> str:
        return (
            f"pgqueuer {version('pgqueuer')}, asyncpg {version('asyncpg')} "
            f"(workers: {self.driver} driver); durable tables; each worker process "
            f"`pgqueuer.run(factory, batch_size={self.batch_size})` (as `pgq run`); W workers x P processes = W*P "
            "processes; I/O scenario: 1 process, --max-concurrent-tasks P --batch-size P/2, "
            "asyncio.sleep; mixed: W such processes; "
            f"bulk: Queries.enqueue with lists of {self.enqueue_batch}; "
            "throw-away database"
        )

    # -- lifecycle -------------------------------------------------------------------

    def setup(self) -> None:
        self.db = pgutil.ThrowawayDatabase("pgqueuer", self.dsn)
        self.db.create()
        asyncio.run(self._with_queries(self._install))

    def teardown(self) -> None:
        if self.db is not None:
            self.db.drop()
            self.db = None

    # -- helpers ---------------------------------------------------------------------

    def _db(self) -> pgutil.ThrowawayDatabase:
        if self.db is None:
            raise RuntimeError("setup() was not called")
        return self.db

    async def _with_queries(self, body: Any, *args: Any) -> Any:
        import asyncpg
        from pgqueuer import AsyncpgDriver, Queries

        connection = await asyncpg.connect(self._db().url)
        try:
            return await body(Queries(AsyncpgDriver(connection)), *args)
        finally:
            await connection.close()

    @staticmethod
    async def _install(queries: Any) -> None:
        await queries.install()

    async def _enqueue_many(
        self, queries: Any, entrypoint: str, count: int, payload: bytes | None
    ) -> None:
        for start in range(0, count, self.enqueue_batch):
            n = min(self.enqueue_batch, count - start)
            await queries.enqueue([entrypoint] * n, [payload] * n, [0] * n)

    def _reset(self) -> None:
        self._db().execute(RESET)

    def _workers(self, processes: int, *options: str, env: dict | None = None):
        command = pgutil.python_module(WORKER_MODULE, *options)
        return pgutil.Workers(
            [command] * processes,
            env={
                "BENCH_PGQUEUER_DSN": self._db().url,
                "BENCH_PGQUEUER_DRIVER": self.driver,
                **(env or {}),
            },
            label="pgqueuer",
        )

    def _run_until_drained(self, count: int, processes: int, *options: str) -> float:
        db = self._db()
        with self._workers(processes, *options) as workers:
            spawned = workers.start()
            pgutil.wait_for_zero(db, REMAINING, workers)
            workers.stop()
        succeeded = int(db.scalar(SUCCEEDED))  # type: ignore[arg-type]
        if succeeded != count:
            raise RuntimeError(f"{succeeded}/{count} PGQueuer jobs successful")
        last = float(db.scalar(LAST_SUCCEEDED))  # type: ignore[arg-type]
        first = float(db.scalar(FIRST_PICKED))  # type: ignore[arg-type]
        self.details = {
            "spawn_to_last": last - spawned,
            "first_start_to_last": last - first,
            "startup": first - spawned,
        }
        return last - spawned

    # -- measurements ----------------------------------------------------------------

    def enqueue_single(self, count: int) -> float:
        self._reset()

        async def body(queries: Any) -> float:
            started = time.perf_counter()
            for _ in range(count):
                await queries.enqueue("noop", None)
            return count / (time.perf_counter() - started)

        rate = asyncio.run(self._with_queries(body))
        self._reset()
        return rate

    def enqueue_bulk(self, count: int) -> float:
        self._reset()

        async def body(queries: Any) -> float:
            started = time.perf_counter()
            await self._enqueue_many(queries, "noop", count, None)
            return count / (time.perf_counter() - started)

        rate = asyncio.run(self._with_queries(body))
        self._reset()
        return rate

    def drain(self, count: int, workers: int, processes: int) -> float:
        self._reset()
        asyncio.run(self._with_queries(self._enqueue_many, "noop", count, None))
        seconds = self._run_until_drained(
            count, workers * processes, "--batch-size", str(self.batch_size)
        )
        self._reset()
        return count / seconds

    def sleep_jobs(self, count: int, seconds: float, processes: int) -> float:
        self._reset()
        payload = repr(seconds).encode()
        asyncio.run(self._with_queries(self._enqueue_many, "sleep", count, payload))
        batch = max(1, processes // 2)
        wall = self._run_until_drained(
            count,
            1,
            "--batch-size",
            str(batch),
            "--max-concurrent-tasks",
            str(max(processes, 2 * batch)),
        )
        self._reset()
        return wall

    def mixed_jobs(self, durations: Sequence[float], workers: int, processes: int) -> float:
        """``workers`` worker processes, each ``--max-concurrent-tasks processes`` (and
        ``--batch-size processes/2``), as the I/O-like scenario's one; started and ready
        (each creates a file when it has connected), then one ``Queries.enqueue`` of
        every job. The end is the last "successful" log row's ``created``."""
        self._reset()
        batch = max(1, processes // 2)
        options = ("--batch-size", str(batch), "--max-concurrent-tasks",
                   str(max(processes, 2 * batch)))  # fmt: skip
        ready = pgutil.ReadyDir()

        async def enqueue(queries: Any) -> float:
            payloads = [repr(seconds).encode() for seconds in durations]
            await queries.enqueue(["sleep"] * len(payloads), payloads, [0] * len(payloads))
            return time.time()

        try:
            with self._workers(workers, *options, env=ready.env()) as pool:
                pool.start()
                ready.wait_for(workers, pool)
                time.sleep(0.5)
                enqueued = asyncio.run(self._with_queries(enqueue))
                pgutil.wait_for_zero(self._db(), REMAINING, pool)
                pool.stop()
        finally:
            ready.remove()
        succeeded = int(self._db().scalar(SUCCEEDED))  # type: ignore[arg-type]
        if succeeded != len(durations):
            raise RuntimeError(f"{succeeded}/{len(durations)} PGQueuer jobs successful")
        last = float(self._db().scalar(LAST_SUCCEEDED))  # type: ignore[arg-type]
        self._reset()
        return last - enqueued

    def latency(self, count: int, interval: float) -> Latency:
        self._reset()
        log = pgutil.StartLog()
        try:
            with self._workers(1, "--batch-size", str(self.batch_size), env=log.env()) as workers:
                workers.start()
                asyncio.run(self._with_queries(self._paced, 1, 0.0))  # warm-up job
                log.wait_for(1, workers)
                log.path.write_text("")
                time.sleep(0.5)  # idle again
                enqueued = asyncio.run(self._with_queries(self._paced, count, interval))
                log.wait_for(count, workers)
                summary = pgutil.latency_summary(enqueued, log.read())
        finally:
            log.remove()
            self._reset()
        return Latency(**summary)

    @staticmethod
    async def _paced(queries: Any, count: int, interval: float) -> dict[str, float]:
        enqueued: dict[str, float] = {}
        origin = time.perf_counter()
        for i in range(count):
            delay = origin + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            at = time.time()
            (job_id,) = await queries.enqueue("record_start", None)
            enqueued[str(job_id)] = at
        return enqueued


if __name__ == "__main__":  # pragma: no cover - manual smoke test
    peer = PgQueuerPeer(batch_size=int(sys.argv[1]) if len(sys.argv) > 1 else BATCH_SIZE)
    peer.setup()
    try:
        print(peer.configuration())
        print("drain 2000 1x2", peer.drain(2000, 1, 2), peer.details)
    finally:
        peer.teardown()
