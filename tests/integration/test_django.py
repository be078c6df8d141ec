"""tasktrail in a real Django project (the example, examples/django_shop) on PostgreSQL
and on SQLite, through
manage.py in processes of their own: migrate installs tasktrail's schema; an enqueue
inside transaction.atomic() is rolled back or committed with it; the worker run by
``manage.py tasktrail worker`` runs a task that reads and writes a model in its forked
process, and enqueues a follow-up inside an atomic block there."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

import tasktrail
from tasktrail.backends.postgres.sql import SCHEMA_VERSION
from tasktrail.backends.sqlite.backend import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION

pytest.importorskip("django", reason="the django extra is not installed")  # CI installs it


REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT = REPO_ROOT / "examples" / "django_shop"


class Project:
    def __init__(self, env: dict[str, str], dsn: str) -> None:
        self.env = env
        self.dsn = dsn  # the database's, for tasktrail from outside Django

    def manage(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=PROJECT, env=self.env,
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done


@pytest.fixture(params=["postgres", "sqlite"])
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Project]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKTRAIL_")}
    env.update(
        DJANGO_SETTINGS_MODULE="project.settings",
        PYTHONPATH=os.pathsep.join([str(PROJECT), str(REPO_ROOT), env.get("PYTHONPATH", "")]),
    )
    if request.param == "sqlite":
        dsn = f"sqlite:///{tmp_path / 'shop.db'}"
        env.update(SHOP_DATABASE=dsn)
        yield Project(env, dsn)
        return
    request.applymarker(pytest.mark.postgres)
    yield from _postgres_project(str(request.getfixturevalue("pg_server")), env)


def _postgres_project(pg_server: str, env: dict[str, str]) -> Iterator[Project]:
    import psycopg

    name = f"tt_django_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = f"{urlunsplit(urlsplit(pg_server)._replace(path='/' + name, query=''))}"
    env.update(SHOP_DATABASE=dsn)
    try:
        yield Project(env, dsn)
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def query(project: Project, statement: str) -> list[object]:
    """The first column of a plain SQL query, run outside Django and tasktrail."""
    if project.dsn.startswith("sqlite"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(project.dsn.removeprefix("sqlite:///"))) as db:
            return [row[0] for row in db.execute(statement)]
    import psycopg

    with psycopg.connect(project.dsn) as conn:
        return [row[0] for row in conn.execute(statement)]  # type: ignore[call-overload]


def test_migrate_atomic_enqueue_and_the_worker_through_manage_py(project: Project) -> None:
    project.manage("migrate", "--no-input")
    postgres = project.dsn.startswith("postgresql")
    [version] = query(
        project,
        "SELECT max(version) FROM tasktrail.migrations"
        if postgres
        else "SELECT max(version) FROM migrations",
    )
    assert version == (SCHEMA_VERSION if postgres else SQLITE_SCHEMA_VERSION)
    project.manage("migrate", "--no-input")  # again: nothing to do, no error

    made = json.loads(project.manage("shop_demo", "--json", "--no-worker").stdout)
    app = tasktrail.App(project.dsn)
    try:
        jobs = app.jobs(limit=None)
        # the rolled-back website has neither its row nor its job; the committed one both
        assert [(job.id, job.task, str(job.ref)) for job in jobs] == [
            (made["job"], "refresh", f"website:{made['kept']}")
        ]
        assert query(project, "SELECT id FROM shop_website") == [made["kept"]]

        worker = project.manage("tasktrail", "worker", "--burst", "-p", "2", timeout=120)
        assert "Traceback" not in worker.stderr, worker.stderr
        refreshed = app.job(made["job"])
        assert (refreshed.status, refreshed.result) == ("succeeded", "https://kept.example")
        # its follow-up, enqueued in the task's own atomic block, ran after it: the row
        # it read had been written by the same transaction that made it
        [follow_up] = [job for job in app.jobs(limit=None) if job.task == "count"]
        assert follow_up.parent_id == refreshed.id
        assert (follow_up.status, follow_up.result) == ("succeeded", len("https://kept.example"))

        listed = json.loads(project.manage("tasktrail", "jobs", "--json").stdout)
        assert {job["id"] for job in listed} == {refreshed.id, follow_up.id}
    finally:
        app.close()


def test_the_example_runs_in_one_command_offline(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKTRAIL_", "SHOP_"))}
    env["SHOP_DATABASE"] = f"sqlite:///{tmp_path / 'shop.db'}"  # not the example's folder
    done = subprocess.run(
        [sys.executable, str(PROJECT / "manage.py"), "shop_demo"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "https://gone.example: rolled back with its job (neither exists)" in out
    assert re.search(r"https://kept.example \(website (\d+)\): committed with its job", out)
    assert "refresh: succeeded, result 'https://kept.example'" in out
    assert "count: succeeded, result 20" in out and re.search(r"website \d+\.comments = 20", out)
