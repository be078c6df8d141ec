"""tasktrail's benchmark tasks, imported by ``tasktrail worker --app bench.apps.tasktrail_app:app``.

The database comes from ``TASKTRAIL_DSN`` (set by :mod:`bench.peers.tasktrail_peer` for each
measurement). The driver registers the same tasks on its own app with :func:`make_app`.
"""

from __future__ import annotations

import os
import time

import tasktrail

NOOP = "bench.noop"
PROBE = "bench.probe"
SLEEP = "bench.sleep"


def make_app(dsn: str | None = None) -> tasktrail.App:
    app = tasktrail.App(dsn)

    @app.task(name=NOOP)
    def noop() -> None:
        return None

    @app.task(name=PROBE)
    def probe(sent: float) -> float:
        """Seconds from ``sent`` (the enqueuer's time.time() just before enqueue) to now,
        when the task begins in its child process: the enqueue→start latency."""
        return time.time() - sent

    @app.task(name=SLEEP)
    def sleep(seconds: float) -> None:
        time.sleep(seconds)

    return app


app = make_app(os.environ.get("TASKTRAIL_DSN"))
