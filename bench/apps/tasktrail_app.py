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
#: The mixed scenario's long and short jobs: two tasks, as two kinds of work would be in
#: an application (tasktrail learns each task's run time; see bench/README.md).
MIXED_LONG = "bench.mixed_long"
MIXED_SHORT = "bench.mixed_short"


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

    @app.task(name=MIXED_LONG)
    def mixed_long(seconds: float) -> None:
        time.sleep(seconds)

    @app.task(name=MIXED_SHORT)
    def mixed_short(seconds: float) -> None:
        time.sleep(seconds)

    return app


app = make_app(os.environ.get("TASKTRAIL_DSN"))
