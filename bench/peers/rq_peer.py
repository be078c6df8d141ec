"""RQ on the local Redis (jobs count themselves done in that Redis).

Each worker is an ``rq worker`` (1 process) or ``rq worker-pool -n N`` (N processes)
subprocess. RQ's own performance notes say ``SimpleWorker`` (the job runs in the worker
process) is several times faster than the default ``Worker`` (a fork per job) for short jobs,
so that is the class used; ``worker_class="rq.Worker"`` measures the default. Bulk enqueue is
``Queue.enqueue_many`` of ``Queue.prepare_data`` items (one Redis pipeline per call).
The mixed scenario waits, before the enqueue, until every worker process has registered.
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
REDIS_DB = 10


class RQPeer(Peer):
    name = "RQ"
    store = "redis"

    def __init__(
        self,
        redis_url: str | None = None,
        worker_class: str = "rq.worker.SimpleWorker",
        result_ttl: int | None = None,
        bulk_chunk: int = 1000,
        timeout: float = 900.0,
    ) -> None:
        self.redis_url = (
            redis_url or os.environ.get("BENCH_RQ_REDIS_URL") or _procs.redis_url(REDIS_DB)
        )
        self.worker_class = worker_class
        self.result_ttl = result_ttl  # None: RQ's default (500 s)
        self.bulk_chunk = bulk_chunk
        self.timeout = timeout
        self._jobs = None
        self._redis: redis.Redis | None = None
        self._queue = None

    # -- plumbing ---------------------------------------------------------------------

    @property
    def jobs(self):
        """The job module, bench.apps.rq_app."""
        if self._jobs is None:
            os.environ["BENCH_RQ_REDIS_URL"] = self.redis_url
            from bench.apps import rq_app

            if self.redis_url != rq_app.REDIS_URL:
                raise RuntimeError(
                    f"bench.apps.rq_app was imported for {rq_app.REDIS_URL}, not {self.redis_url}"
                )
            self._jobs = rq_app
        return self._jobs

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.redis_url)
        return self._redis

    @property
    def queue(self):
        if self._queue is None:
            from rq import Queue

            self._queue = Queue(self.jobs.QUEUE, connection=self.redis)
        return self._queue

    def _flush(self) -> None:
        # The database is this driver's alone (see bench.apps.rq_app).
        self.redis.flushdb()

    def _done(self) -> int:
        return int(self.redis.get(self.jobs.DONE_KEY) or 0)

    def _options(self) -> dict:
        return {} if self.result_ttl is None else {"result_ttl": self.result_ttl}

    def _enqueue_many(self, func, args_list) -> None:
        from rq import Queue

        options = self._options()
        for lo in range(0, len(args_list), self.bulk_chunk):
            self.queue.enqueue_many(
                [
                    Queue.prepare_data(func, args=args, **options)
                    for args in args_list[lo : lo + self.bulk_chunk]
                ]
            )

    def _worker_argv(self, processes: int) -> list[str]:
        common = [
            "--url",
            self.redis_url,
            "--worker-class",
            self.worker_class,
            "--quiet",
        ]
        if processes == 1:
            return [_procs.tool("rq"), "worker", *common, self.jobs.QUEUE]
        return [
            _procs.tool("rq"),
            "worker-pool",
            *common,
            "--num-workers",
            str(processes),
            self.jobs.QUEUE,
        ]

    def _start_workers(self, workers: int, processes: int) -> _procs.Workers:
        pool = _procs.Workers({"BENCH_RQ_REDIS_URL": self.redis_url})
        for _ in range(workers):
            pool.start(self._worker_argv(processes))
        return pool

    def _check_queued(self, count: int) -> None:
        queued = self.queue.count
        if queued != count:
            raise RuntimeError(f"{queued} jobs queued, expected {count}")

    # -- Peer -------------------------------------------------------------------------

    def configuration(self) -> str:
        versions = ", ".join(f"{pkg} {importlib.metadata.version(pkg)}" for pkg in ("rq", "redis"))
        redis_version = self.redis.info("server")["redis_version"]
        ttl = (
            "default result_ttl (500 s)"
            if self.result_ttl is None
            else f"result_ttl={self.result_ttl}"
        )
        return (
            f"{versions}; Redis {redis_version}; `rq worker` (1 process) / `rq worker-pool -n "
            f"<processes>`, --worker-class {self.worker_class} --quiet; jobs INCR a counter; "
            f"{ttl}; single: Queue.enqueue; bulk: Queue.enqueue_many(Queue.prepare_data(...)), "
            f"{self.bulk_chunk} per call"
        )

    def setup(self) -> None:
        self.jobs  # noqa: B018 - import the job module once, with this Redis URL
        self._flush()

    def teardown(self) -> None:
        self._flush()
        if self._redis is not None:
            self._redis.close()
            self._redis = None
            self._queue = None

    def enqueue_single(self, count: int) -> float:
        self._flush()
        noop, options = self.jobs.noop, self._options()
        self.queue.enqueue(noop, **options)  # connect before timing
        self._flush()
        start = time.perf_counter()
        for _ in range(count):
            self.queue.enqueue(noop, **options)
        elapsed = time.perf_counter() - start
        self._check_queued(count)
        self._flush()
        return count / elapsed

    def enqueue_bulk(self, count: int) -> float:
        self._flush()
        self.queue.enqueue(self.jobs.noop)
        self._flush()
        start = time.perf_counter()
        self._enqueue_many(self.jobs.noop, [()] * count)
        elapsed = time.perf_counter() - start
        self._check_queued(count)
        self._flush()
        return count / elapsed

    def drain(self, count: int, workers: int, processes: int) -> float:
        self._flush()
        self._enqueue_many(self.jobs.noop, [()] * count)
        self._check_queued(count)
        start = time.perf_counter()
        with self._start_workers(workers, processes) as pool:
            end = _procs.wait_for(
                lambda: self._done() >= count, self.timeout, pool, what="RQ drain"
            )
        self._flush()
        return count / (end - start)

    def latency(self, count: int, interval: float) -> Latency:
        self._flush()
        stamp, options = self.jobs.stamp, self._options()
        with self._start_workers(1, 1) as pool:
            self.queue.enqueue(stamp, -1, **options)  # the worker is idle once this ran
            _procs.wait_for(lambda: self._done() >= 1, 120, pool, what="RQ warm-up")
            enqueued: dict[int, float] = {}
            due = _procs.paced(interval)
            for i in range(count):
                due(i)
                enqueued[i] = time.time()
                self.queue.enqueue(stamp, i, **options)
            _procs.wait_for(lambda: self._done() >= count + 1, self.timeout, pool)
            raw = self.redis.hgetall(self.jobs.STARTS_KEY)
        started = {int(k): float(v) for k, v in raw.items() if int(k) >= 0}
        self._flush()
        return _procs.latency_of(enqueued, started)

    def sleep_jobs(self, count: int, seconds: float, processes: int) -> float:
        self._flush()
        self._enqueue_many(self.jobs.nap, [(seconds,)] * count)
        start = time.perf_counter()
        with self._start_workers(1, processes) as pool:
            end = _procs.wait_for(
                lambda: self._done() >= count, self.timeout, pool, what="RQ sleep jobs"
            )
        self._flush()
        return end - start

    def mixed_jobs(self, durations: Sequence[float], workers: int, processes: int) -> float:
        from rq import Worker

        self._flush()
        with self._start_workers(workers, processes) as pool:
            # every worker process registers itself once it listens on the queue
            _procs.wait_for(
                lambda: Worker.count(connection=self.redis) >= workers * processes,
                120, pool, what="RQ workers' start",
            )  # fmt: skip
            time.sleep(0.5)
            self._enqueue_many(self.jobs.nap, [(seconds,) for seconds in durations])
            start = time.perf_counter()
            end = _procs.wait_for(
                lambda: self._done() >= len(durations), self.timeout, pool,
                what="RQ mixed jobs",
            )  # fmt: skip
        self._flush()
        return end - start
