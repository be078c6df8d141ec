"""Nothing secret is printed: a password in the DSN never shows in worker logs, CLI output,
error messages, exceptions or the history tasktrail writes.

The server trusts local connections, so a DSN with a made-up password connects like one
without; every output of a real run with it is searched for the password, and the
redacted form (``postgres:***@``) is checked to be there, so that the search means
something.
"""

from __future__ import annotations

import os
import signal
import socket
import traceback
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

import tasktrail
from tasktrail.cli import cli
from tasktrail.config import parse_dsn

from ..integration.conftest import WorkerFactory
from ..integration.helpers import wait_for
from . import tasks

pytestmark = pytest.mark.postgres

SECRET = "s3cret"
APP = ("--app", "tests.security.tasks:app")
CLEAN_ENV: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TASKTRAIL_")}


def with_password(dsn: str, password: str = SECRET) -> str:
    parts = urlsplit(dsn)
    user = parts.username or "postgres"
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:{password}@{host}").geturl()


@pytest.fixture
def secret_dsn(pg_dsn: str) -> Iterator[str]:
    dsn = with_password(pg_dsn)
    tasks.app.configure(dsn)
    try:
        tasks.app.backend  # noqa: B018 - trust authentication: the password is ignored
        yield dsn
    finally:
        tasks.app.close()


def database_text(dsn: str) -> str:
    """Every row of every tasktrail table, as text."""
    import psycopg

    parsed = parse_dsn(dsn)
    assert isinstance(parsed, tasktrail.config.PostgresDsn)
    tables = ("jobs", "events", "workers", "schedules", "schedule_ticks", "migrations")
    with psycopg.connect(parsed.conninfo) as conn:
        return "\n".join(
            str(row[0])
            for table in tables
            for row in conn.execute(f'SELECT t::text FROM "{parsed.schema}".{table} t'.encode())  # noqa: S608
        )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_worker_never_logs_or_records_the_password(
    secret_dsn: str, tmp_path: Path, pg_server: str
) -> None:
    import psycopg

    app = tasks.app
    factory = WorkerFactory(secret_dsn, tmp_path)
    try:
        worker = factory.start(app_spec="tests.security.tasks:app")
        assert tasks.echo.enqueue("hello").wait(timeout=30).status == "succeeded"
        failed = tasks.add.enqueue("a", 1).wait(timeout=30)  # TypeError in the task
        assert failed.status == "failed"
        # Cut the worker's connections from the server side: it logs the loss and reconnects.
        name = f"tasktrail {socket.gethostname()}:{worker.pid}"
        with psycopg.connect(pg_server, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (name,),
            ).fetchall()
            assert killed, "found no connection of the worker to cut"
            wait_for(
                lambda: (
                    "lost the connection to PostgreSQL at postgresql://postgres:***@"
                    in worker.log()
                ),
                "the worker to log the lost connection",
                diagnose=worker.diagnose,
            )
            leaked = admin.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE strpos(application_name, %s) > 0 OR strpos(query, %s) > 0",
                (SECRET, SECRET),
            ).fetchone()
        assert leaked == (0,)
        after = tasks.echo.enqueue("after").wait(timeout=30)
        assert after.status == "succeeded", worker.diagnose()
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0
        log = worker.log()
    finally:
        factory.kill_all()
    assert "postgres:***@" in log  # the DSN is printed, redacted
    assert SECRET not in log
    history = database_text(secret_dsn)
    assert "TypeError" in history and "hello" in history
    assert SECRET not in history
    for job in app.jobs(limit=None):
        assert SECRET not in repr(job) + repr(app.events(job.id))
    assert SECRET not in repr(app.workers(include_stopped=True))


def test_no_command_prints_the_password(secret_dsn: str) -> None:
    handle = tasks.echo.enqueue("x", ref=("website", "1"))
    done = tasks.add.enqueue(1, 2, delay=3600)
    tasks.app.schedules.add("nightly", tasks.echo, cron="0 3 * * *")
    commands = [
        ("jobs",), ("jobs", "--json"), ("show", str(handle.id)), ("show", "--json", str(handle.id)),
        ("stats",), ("stats", "--json"), ("workers", "--all"), ("workers", "--all", "--json"),
        ("schema",), ("migrate",), ("maintain",), ("maintain", "--json"),
        ("schedules", "list"), ("schedules", "list", "--json"), ("schedules", "ticks", "nightly"),
        ("enqueue", *APP, "echo", "--args", "[1]"), ("cancel", str(done.id)),
        ("retry", str(done.id)), ("cancel", "--json", str(done.id)),
        # errors
        ("show", "999999"), ("cancel", "999999"), ("enqueue", *APP, "nope"),
        ("jobs", "--schema", "Bad"), ("jobs", "--limit", "-1"), ("schedules", "pause", "nope"),
        ("worker", *APP, "--processes", "0"),
    ]  # fmt: skip
    outputs = []
    for command in commands:
        words = 2 if command[0] == "schedules" else 1
        argv = [*command[:words], "--dsn", secret_dsn, *command[words:]]
        result = CliRunner().invoke(cli, argv, env=CLEAN_ENV, catch_exceptions=False)
        assert SECRET not in result.output, (command, result.output)
        outputs.append(result.output)
    assert "postgres:***@" in "".join(outputs)  # migrate names the database, redacted
    assert SECRET not in database_text(secret_dsn)


BAD_DSNS = {
    "unreachable": f"postgresql://someone:{SECRET}@127.0.0.1:{closed_port()}/test",
    "no such database": f"postgresql://postgres:{SECRET}@127.0.0.1/tt_no_such_database",
    "bad port": f"postgresql://postgres:{SECRET}@127.0.0.1:port/test",
    "bad url": f"postgresql://postgres:{SECRET}@[::1",
    "bad option": f"postgresql://postgres:{SECRET}@127.0.0.1/test?sslmode=maybe",
    "unknown option": f"postgresql://postgres:{SECRET}@127.0.0.1/test?no_such_option=1",
    "password parameter": f"postgresql://127.0.0.1/test?password={SECRET}&sslmode=maybe",
    "bad schema": f"postgresql://postgres:{SECRET}@127.0.0.1/test?schema=Bad",
    "sqlite with a host": f"sqlite://user:{SECRET}@host/jobs.db",
    "unsupported": f"mysql://user:{SECRET}@host/db",
    "unescaped": f"postgresql://postgres:{SECRET}/?#@127.0.0.1:{closed_port()}/test",
}


@pytest.mark.parametrize("dsn", BAD_DSNS.values(), ids=BAD_DSNS.keys())
def test_errors_never_show_the_password(dsn: str, pg_server: str) -> None:
    with pytest.raises(tasktrail.TasktrailError) as raised:
        tasktrail.App(dsn).backend  # noqa: B018
    shown = "".join(traceback.format_exception(raised.value))  # the whole chain, as printed
    assert SECRET not in shown + repr(raised.value)
    result = CliRunner().invoke(cli, ["jobs", "--dsn", dsn], env=CLEAN_ENV)
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert SECRET not in result.output


def test_reprs_of_parsed_dsns_hide_the_password() -> None:
    parsed = parse_dsn(f"postgresql://postgres:{SECRET}@db.internal/shop?schema=jobs")
    assert SECRET not in repr(parsed) + str(parsed)
    assert "postgres:***@db.internal" in repr(parsed)
    assert SECRET in parsed.conninfo  # still there for connecting
    app = tasktrail.App(f"postgresql://postgres:{SECRET}@db.internal/shop")
    assert SECRET not in app.url + repr(app) + repr(vars(app).get("_parsed"))
