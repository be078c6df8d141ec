"""RQ jobs for the benchmark (``rq worker-pool`` imports them by their dotted names).

They count themselves done in the Redis database the driver polls and flushes
(``BENCH_RQ_REDIS_URL``, default ``/10``: nothing else may live there); the latency job
also records the time it started, keyed by its index.
"""

from __future__ import annotations

import os
import time

import redis

REDIS_URL = os.environ.get("BENCH_RQ_REDIS_URL", "redis://127.0.0.1:6379/10")
QUEUE = "bench"
DONE_KEY = "bench:rq:done"
STARTS_KEY = "bench:rq:starts"

_store: redis.Redis | None = None
_store_pid = 0


def store() -> redis.Redis:
    """This process's connection to the Redis the driver polls (made after any fork)."""
    global _store, _store_pid
    if _store is None or _store_pid != os.getpid():
        _store = redis.Redis.from_url(REDIS_URL)
        _store_pid = os.getpid()
    return _store


def noop() -> None:
    store().incr(DONE_KEY)


def stamp(index: int) -> None:
    started = time.time()
    store().pipeline(transaction=False).hset(STARTS_KEY, str(index), repr(started)).incr(
        DONE_KEY
    ).execute()


def nap(seconds: float) -> None:
    time.sleep(seconds)
    store().incr(DONE_KEY)
