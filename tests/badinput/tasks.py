"""Tasks of the bad-input suite; a worker imports them with ``--app tests.badinput.tasks:app``.

The worker takes its database from ``TASKTRAIL_DSN``; the test process points ``app`` at
the test's database with ``app.configure``.
"""

from __future__ import annotations

from typing import Any

import tasktrail

app = tasktrail.App()


@app.task(name="echo")
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Returns what it was given, so a round trip through a worker can be compared."""
    return {"args": list(args), "kwargs": kwargs}


@app.task(name="add")
def add(a: int, b: int) -> int:
    return a + b


@app.task(name="fail_with")
def fail_with(message: str) -> None:
    raise ValueError(message)


@app.task(name="unique_by_ref", unique="ref")
def unique_by_ref() -> None:
    return None


@app.task(name="locked", lock="key:{key}")
def locked(key: str) -> str:
    return key
