"""Celery tasks for the benchmark (``celery -A bench.apps.celery_app worker``).

Broker: the local Redis, database ``BENCH_CELERY_REDIS_URL`` (default ``/9``), which the
driver flushes between runs: nothing else may live there. No result backend: a task's
completion is what it writes to that same Redis (a counter, and for the latency run the
time it started, keyed by its index).
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

REDIS_URL = os.environ.get("BENCH_CELERY_REDIS_URL", "redis://127.0.0.1:6379/9")
QUEUE = "bench"
DONE_KEY = "bench:celery:done"
STARTS_KEY = "bench:celery:starts"

app = Celery("bench_celery", broker=REDIS_URL, set_as_current=False)
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    # Early acknowledgement (the default): the message is acknowledged when received.
    task_acks_late=False,
    worker_disable_rate_limits=True,
    worker_send_task_events=False,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_store: redis.Redis | None = None
_store_pid = 0


def store() -> redis.Redis:
    """This process's connection to the Redis the driver polls (made after the fork)."""
    global _store, _store_pid
    if _store is None or _store_pid != os.getpid():
        _store = redis.Redis.from_url(REDIS_URL)
        _store_pid = os.getpid()
    return _store


@app.task(name="bench.noop")
def noop() -> None:
    store().incr(DONE_KEY)


@app.task(name="bench.stamp")
def stamp(index: int) -> None:
    started = time.time()
    store().pipeline(transaction=False).hset(STARTS_KEY, str(index), repr(started)).incr(
        DONE_KEY
    ).execute()


@app.task(name="bench.nap")
def nap(seconds: float) -> None:
    time.sleep(seconds)
    store().incr(DONE_KEY)
