"""A crafted row cannot make a worker import or run anything but the app's registered tasks.

Anyone who can write to the jobs table (a producer role, a compromised application, an
SQL injection elsewhere) can name any task and pass any JSON. The worker looks the name
up in its app's registry and nothing else: it never imports a module, resolves a dotted
path or evaluates anything from a row. Every test here runs a real worker on SQLite and
on PostgreSQL, shows the crafted job failed with "unknown task" (the worker runs with no
grace period for tasks it does not know, so it fails them at once), shows that what the row
asked for did not happen (a file it would have created does not exist, a module it would
have imported was not imported), and that the worker goes on serving.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import tasktrail

from ..integration.conftest import WorkerFactory
from ..integration.helpers import wait_for
from . import tasks
from .conftest import insert_job

APP_SPEC = "tests.security.tasks:app"


@pytest.fixture
def app(dsn: str) -> Iterator[tasktrail.App]:
    tasks.app.configure(dsn)
    try:
        tasks.app.backend  # noqa: B018 - create the tables the rows go into
        yield tasks.app
    finally:
        tasks.app.close()


def crafted_rows(marker: Path) -> dict[str, list[object]]:
    """Task names a crafted row might use, each with arguments that would create
    ``marker`` if anything ran them."""
    touch = f"touch {marker}"
    python = f"open({str(marker)!r}, 'w').write('ran')"
    return {
        "os.system": [touch],
        "posix.system": [touch],
        "subprocess.call": [["touch", str(marker)]],
        "subprocess.run": [touch],
        "builtins.exec": [python],
        "builtins.eval": [python],
        "__import__": ["os"],
        "eval": [python],
        "tests.integration.tasks.record": [str(marker)],  # a real task, of another app
        "tests.security.tasks.write_marker": [str(marker)],  # a plain function of this one
        "tests.security.tasks:write_marker": [str(marker)],
        "write_marker": [str(marker)],
        "tests.security.import_marker.run": [],
        "tests.security.import_marker:run": [],
        "..tests.security.tasks.write_marker": [str(marker)],
        "tests..security.tasks.write_marker": [str(marker)],
        "../../../bin/sh": ["-c", touch],
        "/bin/sh": ["-c", touch],
        "echo; touch x": [touch],
        "echo\x00": [touch],
        "echo ": [touch],
        "\u0435cho": [touch],  # a Cyrillic ie (U+0435): looks like echo, is not
        "ECHO": [touch],
        "__main__.echo": [touch],
        "tasktrail.cli.main": [],
        "": [touch],
    }


def test_a_crafted_row_runs_nothing_but_registered_tasks(
    app: tasktrail.App,
    dsn: str,
    workers: WorkerFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    marker = tmp_path / "pwned"
    imported = tmp_path / "imported"
    monkeypatch.setenv("TASKTRAIL_TEST_IMPORT_MARKER", str(imported))
    rows = crafted_rows(marker)
    if dsn.startswith("postgresql"):
        rows.pop("echo\x00")  # a text column cannot hold NUL: PostgreSQL refuses the row
    crafted = {insert_job(dsn, name, args): name for name, args in rows.items()}
    # A registered task with arguments that look like code: they are data to it.
    code = f"__import__('os').system('touch {marker}')"
    looks_like_code = insert_job(dsn, "echo", [code], {"__class__": code, "__init__": code})

    worker = workers.start(app_spec=APP_SPEC, processes=2, unknown_task_grace=0)
    for job_id, name in crafted.items():
        job = tasktrail.JobHandle(app, job_id).wait(timeout=30)
        assert job.status == "failed", (name, job, worker.diagnose())
        assert (job.error or "").startswith(f"unknown task {name!r}:"), job.error
        assert job.attempts == 1
        failed = [e for e in app.events(job_id) if e.kind == "failed"]
        assert [e.detail.get("reason") for e in failed] == ["unknown_task"], failed
    echoed = tasktrail.JobHandle(app, looks_like_code).wait(timeout=30)
    assert echoed.status == "succeeded", worker.diagnose()
    assert echoed.result == {"args": [code], "kwargs": {"__class__": code, "__init__": code}}

    assert not marker.exists(), "a crafted row ran something"
    assert not imported.exists(), "a crafted row made the worker import a module"
    after = tasks.add.enqueue(20, 22).wait(timeout=30)
    assert (after.status, after.result) == ("succeeded", 42), worker.diagnose()
    assert worker.alive()


def test_the_import_marker_would_show_an_import(tmp_path: Path) -> None:
    """The check above could fail: importing the module does leave the trace."""
    import subprocess
    import sys

    imported = tmp_path / "imported"
    env = {**os.environ, "TASKTRAIL_TEST_IMPORT_MARKER": str(imported)}
    subprocess.run(
        [sys.executable, "-c", "import tests.security.import_marker"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        check=True,
        timeout=60,
    )
    assert imported.read_text().startswith("imported by ")


@pytest.mark.postgres
def test_postgresql_refuses_a_row_whose_arguments_are_not_json(pg_dsn: str) -> None:
    import psycopg

    tasktrail.App(pg_dsn).backend.close()
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        insert_job(pg_dsn, "echo", "not json", "{}", raw=True)


def test_a_row_whose_arguments_are_not_json_does_not_stop_the_worker(
    sqlite_dsn: str, tmp_path: Path
) -> None:
    tasks.app.configure(sqlite_dsn)
    factory = WorkerFactory(sqlite_dsn, tmp_path)
    try:
        tasks.app.backend  # noqa: B018 - create the tables
        insert_job(sqlite_dsn, "echo", "not json", "{}", raw=True)
        after = tasks.add.enqueue(1, 1)
        worker = factory.start(app_spec=APP_SPEC, processes=1)
        wait_for(
            lambda: not worker.alive() or after.get().is_final,
            "the worker to run the next job, or to die",
        )
        assert worker.alive(), worker.diagnose()
        assert after.get().status == "succeeded"
    finally:
        factory.kill_all()
        tasks.app.close()


def test_a_row_whose_arguments_are_not_an_array_fails_as_malformed(
    app: tasktrail.App, dsn: str, workers: WorkerFactory
) -> None:
    job_id = insert_job(dsn, "echo", json.dumps({"a": 1}), "{}", raw=True)
    workers.start(app_spec=APP_SPEC, processes=1)
    job = tasktrail.JobHandle(app, job_id).wait(timeout=30)
    assert job.status == "failed"
