"""procrastinate (3.x) on PostgreSQL, driven with its own API.

- Schema: ``app.schema_manager.apply_schema_async()`` in a throw-away database.
- Enqueue: ``defer_async()`` (one job, one transaction) and ``batch_defer_async()`` (one
  statement for many jobs) through its ``PsycopgConnector``.
- Workers: real subprocesses, ``procrastinate --app=bench.apps.procrastinate_app.app worker
  --concurrency C`` (listen/notify on, the default). procrastinate has no multi-process
  worker: its documentation scales out by launching several worker processes and, within
  one, by ``--concurrency`` asynchronous sub-workers. So "W workers x P processes" is run
  as W*P worker processes of ``--concurrency C`` each, C chosen by measurement (see
  ``CONCURRENCY``); the I/O-like scenario's "P processes" is one worker process of
  ``--concurrency P`` (async sleeps), its nearest equivalent, and the mixed scenario's
  "W workers x P processes" is W worker processes of ``--concurrency P``.
- Drained: no job left in ``todo``/``doing`` in ``procrastinate_jobs`` (and all
  ``succeeded``); the end time is the last ``succeeded`` event's timestamp in
  ``procrastinate_events``, the start the moment the first worker process is spawned.
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

APP_PATH = "bench.apps.procrastinate_app.app"

#: ``--concurrency`` of each worker process for the throughput scenarios (no-op jobs).
#: Measured 10,000 no-op jobs, 2 worker processes on 2 cores: see ``configuration``.
CONCURRENCY = 4

#: Jobs per ``batch_defer_async`` call for bulk enqueue and pre-enqueue.
BATCH = 10_000

RESET = (
    "TRUNCATE procrastinate_jobs, procrastinate_events, procrastinate_periodic_defers,"
    " procrastinate_workers RESTART IDENTITY CASCADE"
)
REMAINING = "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
SUCCEEDED = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
LAST_SUCCEEDED = (
    "SELECT extract(epoch FROM max(at))::float8 FROM procrastinate_events WHERE type = 'succeeded'"
)
FIRST_STARTED = (
    "SELECT extract(epoch FROM min(at))::float8 FROM procrastinate_events WHERE type = 'started'"
)


class ProcrastinatePeer(Peer):
    name = "Procrastinate"
    store = "postgresql"

    def __init__(
        self,
        dsn: str | None = None,
        concurrency: int = CONCURRENCY,
        task: str = "noop",
        batch: int = BATCH,
    ) -> None:
        self.dsn = dsn
        self.concurrency = concurrency
        self.task = task
        self.batch = batch
        self.db: pgutil.ThrowawayDatabase | None = None
        #: Details of the last drain/sleep run (seconds, epoch times), for the report.
        self.details: dict[str, Any] = {}

    def configuration(self) -> str:
        return (
            f"procrastinate {version('procrastinate')} with PsycopgConnector "
            f"(psycopg {version('psycopg')}); async task `{self.task}`; each worker process "
            f"`procrastinate --log-level=warning worker --concurrency {self.concurrency}` (listen/notify, "
            "delete_jobs=never); W workers x P processes = W*P worker processes; I/O "
            "scenario: 1 process, --concurrency P, asyncio.sleep; mixed: W processes, "
            "--concurrency P each; bulk: batch_defer_async, "
            f"{self.batch} jobs per call; throw-away database"
        )

    # -- lifecycle -------------------------------------------------------------------

    def setup(self) -> None:
        self.db = pgutil.ThrowawayDatabase("procrastinate", self.dsn)
        self.db.create()
        asyncio.run(self._with_app(self._apply_schema))

    def teardown(self) -> None:
        if self.db is not None:
            self.db.drop()
            self.db = None

    # -- helpers ---------------------------------------------------------------------

    def _db(self) -> pgutil.ThrowawayDatabase:
        if self.db is None:
            raise RuntimeError("setup() was not called")
        return self.db

    async def _with_app(self, body: Any, *args: Any) -> Any:
        from procrastinate import PsycopgConnector

        from bench.apps import procrastinate_app

        connector = PsycopgConnector(conninfo=self._db().url)
        with procrastinate_app.app.replace_connector(connector) as app:
            async with app.open_async():
                return await body(app, *args)

    @staticmethod
    async def _apply_schema(app: Any) -> None:
        await app.schema_manager.apply_schema_async()

    async def _defer_many(self, app: Any, task: str, count: int, kwargs: dict) -> None:
        deferrer = app.configure_task(name=task, allow_unknown=False)
        for start in range(0, count, self.batch):
            n = min(self.batch, count - start)
            await deferrer.batch_defer_async(*([kwargs] * n))

    def _reset(self) -> None:
        self._db().execute(RESET)

    def _worker_command(self, concurrency: int) -> list[str]:
        return pgutil.python_module(
            "procrastinate",
            f"--app={APP_PATH}",
            "--log-level=warning",
            "worker",
            f"--concurrency={concurrency}",
        )

    def _workers(self, processes: int, concurrency: int, env: dict | None = None):
        return pgutil.Workers(
            [self._worker_command(concurrency)] * processes,
            env={"BENCH_PROCRASTINATE_DSN": self._db().url, **(env or {})},
            label="procrastinate",
        )

    def _run_until_drained(self, count: int, processes: int, concurrency: int) -> float:
        """Start the workers on ``count`` queued jobs; seconds from spawn to the last
        ``succeeded`` event."""
        db = self._db()
        with self._workers(processes, concurrency) as workers:
            spawned = workers.start()
            pgutil.wait_for_zero(db, REMAINING, workers)
            workers.stop()
        succeeded = int(db.scalar(SUCCEEDED))  # type: ignore[arg-type]
        if succeeded != count:
            raise RuntimeError(f"{succeeded}/{count} procrastinate jobs succeeded")
        last = float(db.scalar(LAST_SUCCEEDED))  # type: ignore[arg-type]
        first = float(db.scalar(FIRST_STARTED))  # type: ignore[arg-type]
        self.details = {
            "spawn_to_last": last - spawned,
            "first_start_to_last": last - first,
            "startup": first - spawned,
        }
        return last - spawned

    # -- measurements ----------------------------------------------------------------

    def enqueue_single(self, count: int) -> float:
        self._reset()

        async def body(app: Any) -> float:
            deferrer = app.configure_task(name=self.task, allow_unknown=False)
            started = time.perf_counter()
            for _ in range(count):
                await deferrer.defer_async()
            return count / (time.perf_counter() - started)

        rate = asyncio.run(self._with_app(body))
        self._reset()
        return rate

    def enqueue_bulk(self, count: int) -> float:
        self._reset()

        async def body(app: Any) -> float:
            started = time.perf_counter()
            await self._defer_many(app, self.task, count, {})
            return count / (time.perf_counter() - started)

        rate = asyncio.run(self._with_app(body))
        self._reset()
        return rate

    def drain(self, count: int, workers: int, processes: int) -> float:
        self._reset()
        asyncio.run(self._with_app(self._defer_many, self.task, count, {}))
        seconds = self._run_until_drained(count, workers * processes, self.concurrency)
        self._reset()
        return count / seconds

    def sleep_jobs(self, count: int, seconds: float, processes: int) -> float:
        self._reset()
        asyncio.run(self._with_app(self._defer_many, "sleep", count, {"seconds": seconds}))
        wall = self._run_until_drained(count, 1, processes)
        self._reset()
        return wall

    def mixed_jobs(self, durations: Sequence[float], workers: int, processes: int) -> float:
        """``workers`` worker processes of ``--concurrency processes`` each (as the
        I/O-like scenario's one), started and registered in ``procrastinate_workers``,
        then one ``batch_defer_async`` of every job (async sleeps). The end is the last
        ``succeeded`` event's time."""
        self._reset()
        db = self._db()

        async def defer(app: Any) -> float:
            deferrer = app.configure_task(name="sleep", allow_unknown=False)
            await deferrer.batch_defer_async(*({"seconds": s} for s in durations))
            return time.time()

        with self._workers(workers, processes) as pool:
            pool.start()
            deadline = time.monotonic() + 120
            while int(db.scalar("SELECT count(*) FROM procrastinate_workers")) < workers:  # type: ignore[call-overload]
                pool.check()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"fewer than {workers} procrastinate workers registered")
                time.sleep(pgutil.POLL_INTERVAL)
            time.sleep(0.5)
            enqueued = asyncio.run(self._with_app(defer))
            pgutil.wait_for_zero(db, REMAINING, pool)
            pool.stop()
        succeeded = int(db.scalar(SUCCEEDED))  # type: ignore[arg-type]
        if succeeded != len(durations):
            raise RuntimeError(f"{succeeded}/{len(durations)} procrastinate jobs succeeded")
        last = float(db.scalar(LAST_SUCCEEDED))  # type: ignore[arg-type]
        self._reset()
        return last - enqueued

    def latency(self, count: int, interval: float) -> Latency:
        self._reset()
        log = pgutil.StartLog()
        try:
            with self._workers(1, self.concurrency, log.env()) as workers:
                workers.start()
                asyncio.run(self._with_app(self._paced, 1, 0.0))  # warm-up job
                log.wait_for(1, workers)
                log.path.write_text("")
                time.sleep(0.5)  # idle again
                enqueued = asyncio.run(self._with_app(self._paced, count, interval))
                log.wait_for(count, workers)
                summary = pgutil.latency_summary(enqueued, log.read())
        finally:
            log.remove()
            self._reset()
        return Latency(**summary)

    @staticmethod
    async def _paced(app: Any, count: int, interval: float) -> dict[str, float]:
        deferrer = app.configure_task(name="record_start", allow_unknown=False)
        enqueued: dict[str, float] = {}
        origin = time.perf_counter()
        for i in range(count):
            delay = origin + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            at = time.time()
            job_id = await deferrer.defer_async()
            enqueued[str(job_id)] = at
        return enqueued


if __name__ == "__main__":  # pragma: no cover - manual smoke test
    peer = ProcrastinatePeer(concurrency=int(sys.argv[1]) if len(sys.argv) > 1 else CONCURRENCY)
    peer.setup()
    try:
        print(peer.configuration())
        print("drain 2000 1x2", peer.drain(2000, 1, 2), peer.details)
    finally:
        peer.teardown()
