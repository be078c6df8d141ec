"""Bad input while a real worker runs: refused, nothing changes, and the worker keeps serving.

Also what bad bytes do once a worker is involved: NUL in arguments and results is JSON
and comes back exactly on both backends; NUL in an error text (a text column) is kept on
SQLite and replaced by U+FFFD on PostgreSQL, which cannot store it in text.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tasktrail
from tasktrail.errors import TasktrailError

from ..integration.conftest import WorkerFactory
from ..integration.helpers import assert_valid_histories
from . import tasks
from .conftest import database_state
from .test_api import CASES

APP_SPEC = "tests.badinput.tasks:app"


@pytest.fixture
def app(dsn: str) -> Iterator[tasktrail.App]:
    tasks.app.configure(dsn)
    try:
        yield tasks.app
    finally:
        tasks.app.close()


@pytest.fixture
def workers(dsn: str, tmp_path: Path) -> Iterator[WorkerFactory]:
    factory = WorkerFactory(dsn, tmp_path)
    try:
        yield factory
    finally:
        factory.kill_all()


def without_worker_rows(state: dict[str, Any]) -> dict[str, Any]:
    """The database but the worker registry, whose heartbeat moves while a worker runs."""
    return {table: rows for table, rows in state.items() if table != "workers"}


def test_garbage_through_the_api_does_not_disturb_a_running_worker(
    app: tasktrail.App, dsn: str, workers: WorkerFactory
) -> None:
    worker = workers.start(app_spec=APP_SPEC)
    record = worker.wait_registered(app)
    first = tasks.echo.enqueue("before").wait(timeout=30)
    assert first.status == "succeeded", worker.diagnose()
    # What some cases refer to, as in the other modules' database: a job waiting (an hour
    # from now), a cancelled one, a schedule.
    tasks.echo.enqueue("seed", ref=("website", "42"), delay=3600)
    tasks.add.enqueue(1, 2, delay=3600).cancel(reason="seed")
    app.schedules.add("seed", tasks.echo, every=3600, args=["tick"])

    before = without_worker_rows(database_state(dsn))
    refused: list[str] = []
    for case in CASES:
        call, error, _ = case.values
        with pytest.raises(TasktrailError) as raised:
            call(app)
        assert isinstance(raised.value, error), f"{case.id}: {raised.value!r}"
        refused.append(case.id)
    assert without_worker_rows(database_state(dsn)) == before
    assert len(refused) == len(CASES) > 250

    job = tasks.add.enqueue(2, 3).wait(timeout=30)
    assert (job.status, job.result, job.worker_id) == ("succeeded", 5, record.id), worker.diagnose()
    assert worker.alive()
    assert_valid_histories(app)


def test_nul_bytes_through_a_worker(app: tasktrail.App, dsn: str, workers: WorkerFactory) -> None:
    worker = workers.start(app_spec=APP_SPEC)
    echoed = tasks.echo.enqueue("a\x00b", ["\x00"], key="\x00", **{"k\x00": 1}).wait(timeout=30)
    assert echoed.status == "succeeded", worker.diagnose()
    assert echoed.result == {"args": ["a\x00b", ["\x00"]], "kwargs": {"key": "\x00", "k\x00": 1}}

    failed = tasks.fail_with.enqueue("bad\x00byte").wait(timeout=30)
    assert failed.status == "failed", worker.diagnose()
    if dsn.startswith("postgresql"):
        assert failed.error == "ValueError: bad\ufffdbyte"  # a text column cannot hold NUL
    else:
        assert failed.error == "ValueError: bad\x00byte"
    # The history's detail is JSON, which can say NUL (as \u0000) on both backends.
    [event] = [e for e in app.events(failed.id) if e.kind == "failed"]
    assert event.detail["error"] == "ValueError: bad\x00byte"
    assert "ValueError: bad" in event.detail["traceback"]

    after = tasks.add.enqueue(1, 1).wait(timeout=30)
    assert after.status == "succeeded" and after.result == 2
    assert worker.alive()
    assert_valid_histories(app)
