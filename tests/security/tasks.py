"""Apps of the security suite; workers import them with ``--app tests.security.tasks:…``.

``app`` registers two harmless tasks and nothing else: crafted rows naming anything
else, including the plain functions of this module, must not run. ``roles_app`` is what
the least-privilege tests run as each PostgreSQL role, with a periodic task so that a
worker fires schedules too. Both take their DSN from ``TASKTRAIL_DSN``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import tasktrail

app = tasktrail.App()


@app.task(name="echo")
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


@app.task(name="add")
def add(a: int, b: int) -> int:
    return a + b


def write_marker(path: str) -> None:
    """Not a task: a crafted row naming it must not make a worker call it."""
    with open(path, "w", encoding="utf-8") as file:
        file.write("ran")


roles_app = tasktrail.App()


@roles_app.task(name="double")
def double(number: int) -> int:
    return 2 * number


@roles_app.task(name="limited", concurrency=2)
def limited(number: int) -> int:
    return number


@roles_app.task(name="flaky", retries=1, retry_delay=0.01, retry_jitter=0.0)
def flaky(marker: str) -> str:
    """Fails on its first attempt, succeeds on the second."""
    job = tasktrail.current_job()
    assert job is not None
    if job.attempt == 1:
        raise RuntimeError("first attempt fails on purpose")
    return marker


@roles_app.task(name="unique_by_ref", unique="ref")
def unique_by_ref() -> None:
    return None


@roles_app.periodic(every=timedelta(seconds=1), name="heartbeat-job")
def periodic_tick() -> str:
    return "tick"
