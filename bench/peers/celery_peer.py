"""Celery 5 on the local Redis (broker only; tasks count themselves done in that Redis).

Workers are ``celery -A bench.apps.celery_app worker`` subprocesses with the prefork pool,
``-O fair`` and heartbeat/gossip/mingle off (they only matter to a cluster of workers that
talk to each other). Bulk enqueue sends through one producer inside kombu's
``Producer.batch()`` (one Redis pipeline per 1,000 messages), Celery's ``apply_async(
producer=...)`` being its documented way to send many tasks over one connection.
The mixed scenario keeps the default prefetch (4 per process) and waits, before the
enqueue, until every worker answers ``app.control.ping``.
"""

from __future__ import annotations

import importlib.metadata
import os
import time
from collections.abc import Sequence

import redis

from bench.peers import _procs
from bench.peers.base import Latency, Peer

#: The Redis database of this driver alone (on the server of ``BENCH_REDIS_URL``).
REDIS_DB = 9


class CeleryPeer(Peer):
    name = "Celery"
    store = "redis"

    def __init__(
        self,
        redis_url: str | None = None,
        prefetch_multiplier: int = 4,
        bulk: str = "batch",
        timeout: float = 600.0,
    ) -> None:
        self.redis_url = (
            redis_url or os.environ.get("BENCH_CELERY_REDIS_URL") or _procs.redis_url(REDIS_DB)
        )
        self.prefetch_multiplier = prefetch_multiplier
        self.bulk = bulk  # "batch": Producer.batch(); "group": group(...).apply_async()
        self.timeout = timeout
        self._app = None
        self._redis: redis.Redis | None = None

    # -- plumbing ---------------------------------------------------------------------

    @property
    def tasks(self):
        """The task module, bench.apps.celery_app."""
        if self._app is None:
            os.environ["BENCH_CELERY_REDIS_URL"] = self.redis_url
            from bench.apps import celery_app

            if self.redis_url != celery_app.REDIS_URL:
                raise RuntimeError(
                    f"bench.apps.celery_app was imported for {celery_app.REDIS_URL}, "
                    f"not {self.redis_url}"
                )
            self._app = celery_app
        return self._app

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.redis_url)
        return self._redis

    def _flush(self) -> None:
        """Empty the queue and the counters; keep kombu's bindings (the producer caches
        its declarations, and a message sent to an exchange without them is dropped)."""
        doomed = [k for k in self.redis.scan_iter(count=1000) if not k.startswith(b"_kombu.")]
        if doomed:
            self.redis.delete(*doomed)

    def _done(self) -> int:
        return int(self.redis.get(self.tasks.DONE_KEY) or 0)

    def _worker_argv(self, index: int, processes: int) -> list[str]:
        return [
            _procs.tool("celery"),
            "-A",
            "bench.apps.celery_app",
            "worker",
            "--pool=prefork",
            f"--concurrency={processes}",
            f"--prefetch-multiplier={self.prefetch_multiplier}",
            "-O",
            "fair",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "--loglevel=WARNING",
            "-Q",
            self.tasks.QUEUE,
            "-n",
            f"bench{index}@%h",
        ]

    def _start_workers(self, workers: int, processes: int) -> _procs.Workers:
        pool = _procs.Workers({"BENCH_CELERY_REDIS_URL": self.redis_url})
        for index in range(workers):
            pool.start(self._worker_argv(index, processes))
        return pool

    def _send_many(self, task, args_list) -> None:
        if self.bulk == "group":
            from celery import group

            group(task.s(*args) for args in args_list).apply_async()
            return
        with self.tasks.app.producer_or_acquire() as producer, producer.batch():
            for args in args_list:
                task.apply_async(args, producer=producer)

    # -- Peer -------------------------------------------------------------------------

    def configuration(self) -> str:
        versions = ", ".join(
            f"{pkg} {importlib.metadata.version(pkg)}" for pkg in ("celery", "kombu", "redis")
        )
        redis_version = self.redis.info("server")["redis_version"]
        bulk = (
            "group(...).apply_async()"
            if self.bulk == "group"
            else "apply_async(producer=p) in kombu Producer.batch()"
        )
        return (
            f"{versions}; Redis {redis_version} broker, no result backend (tasks INCR a "
            f"counter); worker --pool=prefork -c <processes> --prefetch-multiplier "
            f"{self.prefetch_multiplier} -O fair --without-heartbeat --without-gossip "
            f"--without-mingle -l WARNING; acks early (default), json; single: delay(); "
            f"bulk: {bulk}"
        )

    def setup(self) -> None:
        self.tasks  # noqa: B018 - import the task module once, with this Redis URL
        self._flush()

    def teardown(self) -> None:
        # The database is this driver's alone (see bench.apps.celery_app).
        self.redis.flushdb()
        if self._redis is not None:
            self._redis.close()
            self._redis = None

    def enqueue_single(self, count: int) -> float:
        self._flush()
        noop = self.tasks.noop
        noop.delay()  # connect the producer pool before timing
        self._flush()
        start = time.perf_counter()
        for _ in range(count):
            noop.delay()
        elapsed = time.perf_counter() - start
        self._check_queued(count)
        self._flush()
        return count / elapsed

    def enqueue_bulk(self, count: int) -> float:
        self._flush()
        self.tasks.noop.delay()
        self._flush()
        start = time.perf_counter()
        self._send_many(self.tasks.noop, [()] * count)
        elapsed = time.perf_counter() - start
        self._check_queued(count)
        self._flush()
        return count / elapsed

    def _check_queued(self, count: int) -> None:
        queued = self.redis.llen(self.tasks.QUEUE)
        if queued != count:
            raise RuntimeError(f"{queued} messages queued, expected {count}")

    def drain(self, count: int, workers: int, processes: int) -> float:
        self._flush()
        self._send_many(self.tasks.noop, [()] * count)
        self._check_queued(count)
        start = time.perf_counter()
        with self._start_workers(workers, processes) as pool:
            end = _procs.wait_for(
                lambda: self._done() >= count, self.timeout, pool, what="Celery drain"
            )
        self._flush()
        return count / (end - start)

    def latency(self, count: int, interval: float) -> Latency:
        self._flush()
        stamp = self.tasks.stamp
        with self._start_workers(1, 1) as pool:
            stamp.delay(-1)  # the worker is idle and ready once this ran
            _procs.wait_for(lambda: self._done() >= 1, 120, pool, what="Celery warm-up")
            enqueued: dict[int, float] = {}
            due = _procs.paced(interval)
            for i in range(count):
                due(i)
                enqueued[i] = time.time()
                stamp.delay(i)
            _procs.wait_for(lambda: self._done() >= count + 1, self.timeout, pool)
            raw = self.redis.hgetall(self.tasks.STARTS_KEY)
        started = {int(k): float(v) for k, v in raw.items() if int(k) >= 0}
        self._flush()
        return _procs.latency_of(enqueued, started)

    def sleep_jobs(self, count: int, seconds: float, processes: int) -> float:
        self._flush()
        self._send_many(self.tasks.nap, [(seconds,)] * count)
        start = time.perf_counter()
        with self._start_workers(1, processes) as pool:
            end = _procs.wait_for(
                lambda: self._done() >= count, self.timeout, pool, what="Celery sleep jobs"
            )
        self._flush()
        return end - start

    def _wait_ready(self, pool: _procs.Workers, workers: int, timeout: float = 120.0) -> None:
        """Until every worker answers a remote-control ping (it consumes its queue), then
        a moment."""
        deadline = time.monotonic() + timeout
        while len(self.tasks.app.control.ping(timeout=0.5) or []) < workers:
            pool.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {workers} Celery workers answered in {timeout:g} s")
        time.sleep(0.5)

    def mixed_jobs(self, durations: Sequence[float], workers: int, processes: int) -> float:
        self._flush()
        with self._start_workers(workers, processes) as pool:
            self._wait_ready(pool, workers)
            self._send_many(self.tasks.nap, [(seconds,) for seconds in durations])
            start = time.perf_counter()
            end = _procs.wait_for(
                lambda: self._done() >= len(durations), self.timeout, pool,
                what="Celery mixed jobs",
            )  # fmt: skip
        self._flush()
        return end - start
