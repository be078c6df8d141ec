"""What only the PostgreSQL backend does, or does its own way.

Enqueueing inside the caller's transaction, LISTEN/NOTIFY wake-ups, the number of
statements on the hot path, the claim query's plan, losing the connection, and NUL
characters (kept exactly in json columns; replaced by U+FFFD in the plain-text error).
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest

from tasktrail import App, BackendUnavailable, InvalidArguments, JobNotFound, Task
from tasktrail.backends import Backend, open_backend
from tasktrail.backends.postgres.backend import COPY_FROM
from tasktrail.clock import utcnow
from tasktrail.config import PostgresDsn, parse_dsn
from tasktrail.job import Job, NewJob, Outcome, WorkerInfo
from tasktrail.lifecycle import check_history

try:  # the postgres extra may not be installed: skip (fail under CI) like pg_server does
    import psycopg
    from psycopg import sql
    from psycopg.rows import dict_row, tuple_row
except ImportError as exc:
    if os.environ.get("CI"):
        raise
    pytest.skip(f"the postgres extra is not installed ({exc})", allow_module_level=True)

from .helpers import readable

pytestmark = pytest.mark.postgres

DEADLINE = 10.0  # generous: a passing run never waits this long


def worker_info(name: str = "test-worker", queues: tuple[str, ...] = ()) -> WorkerInfo:
    return WorkerInfo(
        name=name,
        host=socket.gethostname(),
        pid=os.getpid(),
        processes=1,
        reserve=10,
        queues=queues,
        lease_seconds=60.0,
    )


def schema_of(dsn: str) -> str:
    parsed = parse_dsn(dsn)
    assert isinstance(parsed, PostgresDsn)
    return parsed.schema


@dataclass
class Apps:
    """An app on the test's schema, with one task, and its backend."""

    app: App
    echo: Task[Any, Any]

    @property
    def backend(self) -> Backend:
        return self.app.backend


@pytest.fixture
def apps(pg_dsn: str) -> Iterator[Apps]:
    app = App(pg_dsn)

    @app.task(name="echo", retries=1)
    def echo(*args: Any, **kwargs: Any) -> Any:
        return [args, kwargs]

    try:
        app.backend  # noqa: B018 - creates the schema now
        yield Apps(app, echo)
    finally:
        app.close()


@pytest.fixture
def orders(pg_server: str, pg_dsn: str, apps: Apps) -> str:
    """A business table next to the jobs: ``<schema>.orders``."""
    table = sql.Identifier(schema_of(pg_dsn), "orders")
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, total int)").format(table))
    return f'"{schema_of(pg_dsn)}".orders'


def order_ids(pg_server: str, orders: str) -> list[int]:
    with psycopg.connect(pg_server) as conn:
        return [row[0] for row in conn.execute(f"SELECT id FROM {orders} ORDER BY id")]  # noqa: S608


# -- enqueue in the caller's transaction ----------------------------------------------------


@pytest.mark.parametrize("row_factory", [tuple_row, dict_row], ids=["tuple_row", "dict_row"])
def test_a_job_enqueued_in_a_committed_transaction_exists_with_its_event(
    row_factory: Any, apps: Apps, orders: str, pg_server: str
) -> None:
    with psycopg.connect(pg_server, row_factory=row_factory) as conn:
        with conn.transaction():
            conn.execute(f"INSERT INTO {orders} (id, total) VALUES (1, 100)")  # noqa: S608
            handle = apps.echo.enqueue("order", 1, ref=("order", 1), connection=conn)
            # Not visible outside the transaction yet: it is not autocommitted.
            assert apps.backend.get_job(handle.id) is None
            assert apps.app.jobs(ref=("order", 1)) == []
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE

    job = apps.app.job(handle.id)
    assert job.status == "queued"
    assert job.args == ["order", 1]
    assert [event.kind for event in apps.app.events(handle.id)] == ["enqueued"]
    assert order_ids(pg_server, orders) == [1]


def test_a_job_enqueued_in_a_rolled_back_transaction_does_not_exist(
    apps: Apps, orders: str, pg_server: str
) -> None:
    class Abort(Exception):
        pass

    handles = []
    with psycopg.connect(pg_server) as conn:
        with pytest.raises(Abort), conn.transaction():
            conn.execute(f"INSERT INTO {orders} (id, total) VALUES (2, 200)")  # noqa: S608
            handles.append(apps.echo.enqueue("order", 2, connection=conn))
            handles += apps.app.enqueue_many(
                [apps.echo.prepare("line", n) for n in range(3)], connection=conn
            )
            raise Abort
        # The same connection keeps working for the caller afterwards.
        conn.execute("SELECT 1")

    assert len(handles) == 4
    for handle in handles:
        with pytest.raises(JobNotFound):
            apps.app.job(handle.id)
        assert apps.backend.list_events(handle.id) == []
    assert apps.app.jobs() == []
    assert order_ids(pg_server, orders) == []


@pytest.mark.parametrize(
    "connection",
    [object(), sqlite3.connect(":memory:"), "postgresql://localhost/db"],
    ids=["object", "sqlite3", "dsn string"],
)
def test_a_connection_that_is_not_psycopg_is_refused_clearly(apps: Apps, connection: Any) -> None:
    with pytest.raises(
        InvalidArguments,
        match=r"must be a psycopg \(3\) Connection or a SQLAlchemy Connection or Session, got \w+",
    ):
        apps.echo.enqueue("x", connection=connection)
    assert apps.app.jobs() == []


# -- LISTEN / NOTIFY ------------------------------------------------------------------------


def test_a_registered_worker_is_woken_by_an_enqueue_from_another_connection(
    apps: Apps, pg_dsn: str, pg_server: str
) -> None:
    backend = open_backend(pg_dsn)
    try:
        assert backend.wakeup_fileno() is None  # not a worker: nothing to wake
        worker_id = backend.register_worker(worker_info(), now=utcnow())
        fd = backend.wakeup_fileno()
        assert fd is not None
        backend.consume_wakeups()
        assert not readable(fd, 0)

        apps.echo.enqueue("wake up")  # the app's own connection, not the worker's
        assert readable(fd, DEADLINE), "no NOTIFY arrived after an enqueue"
        backend.consume_wakeups()
        assert not readable(fd, 0), "consume_wakeups left the descriptor readable"
        assert [job.args for job in backend.reserve(worker_id, [], 10, now=utcnow())] == [
            ["wake up"]
        ]

        # A job enqueued in the caller's transaction wakes workers when it commits.
        with psycopg.connect(pg_server) as conn, conn.transaction():
            apps.echo.enqueue("committed", connection=conn)
        assert readable(fd, DEADLINE), "no NOTIFY arrived after a transactional enqueue"
        backend.consume_wakeups()

        # A big batch is written by COPY: the trigger wakes workers for it too.
        apps.app.enqueue_many(apps.echo.prepare(n) for n in range(COPY_FROM))
        assert readable(fd, DEADLINE), "no NOTIFY arrived after a COPY enqueue"
        backend.consume_wakeups()
        claimed = backend.reserve(worker_id, [], 2 * COPY_FROM, now=utcnow())
        assert [job.args for job in claimed] == [["committed"]] + [[n] for n in range(COPY_FROM)]

        backend.unregister_worker(worker_id, now=utcnow())
        assert backend.wakeup_fileno() is None
    finally:
        backend.close()


# -- statements on the hot path -------------------------------------------------------------


@dataclass
class Traffic:
    """Protocol messages a client sent and received, read from libpq's trace."""

    statements: int = 0  # Execute (extended protocol) and Query (simple protocol) messages
    round_trips: int = 0  # ReadyForQuery messages: the server finished one request
    texts: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return "\n".join(self.texts)


class TrafficCounter:
    """Counts what every psycopg connection opened after it is installed sends.

    Client-side, from libpq's own protocol trace (``PQtrace``), so it sees every
    statement, including a ``BEGIN``/``COMMIT`` psycopg issues by itself.
    """

    _MESSAGE = re.compile(r"^([FB])\t\d+\t(\w+)\t?(.*)$", re.MULTILINE)

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.connections: list[psycopg.Connection[Any]] = []
        real_connect = psycopg.connect

        def connect(*args: Any, **kwargs: Any) -> psycopg.Connection[Any]:
            conn = real_connect(*args, **kwargs)
            self.connections.append(conn)
            return conn

        monkeypatch.setattr(psycopg, "connect", connect)

    @contextmanager
    def measure(self) -> Iterator[Traffic]:
        traffic = Traffic()
        traces = []
        for conn in self.connections:
            if conn.closed:
                continue
            trace = tempfile.TemporaryFile()  # noqa: SIM115 - closed once read, below
            conn.pgconn.trace(trace.fileno())
            conn.pgconn.set_trace_flags(
                psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE
            )
            traces.append((conn, trace))
        try:
            yield traffic
        finally:
            for conn, trace in traces:
                conn.pgconn.untrace()  # flushes the trace
                trace.seek(0)
                text = trace.read().decode("utf-8", "replace")
                trace.close()
                for direction, kind, rest in self._MESSAGE.findall(text):
                    if direction == "F" and kind in ("Parse", "Query"):
                        traffic.texts.append(f"{kind}: {rest[:80]}")
                    if direction == "F" and kind in ("Execute", "Query"):
                        traffic.statements += 1
                    if direction == "B" and kind == "ReadyForQuery":
                        traffic.round_trips += 1


@pytest.mark.parametrize(
    ("jobs", "batch", "queues"),
    [(400, 20, ()), (400, 200, ()), (400, 50, ("default", "other"))],
    ids=["20-per-batch", "200-per-batch", "by-queue-50-per-batch"],
)
def test_hot_path_statements_grow_with_batches_not_with_jobs(
    jobs: int, batch: int, queues: tuple[str, ...], pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = TrafficCounter(monkeypatch)
    app = App(pg_dsn)

    @app.task(name="work", retries=2)
    def work(n: int) -> int:
        return n

    try:
        backend = app.backend
        worker_id = backend.register_worker(worker_info(queues=queues), now=utcnow())

        # A batch smaller than COPY_FROM is one statement; a bigger one is one COPY of
        # the jobs, after a statement that takes their ids and writes their events, in
        # one transaction: four statements, whatever the number of jobs.
        with counter.measure() as enqueue:
            app.enqueue_many(work.prepare(n) for n in range(COPY_FROM - 1))
        assert enqueue.statements == 1, enqueue.describe()
        # (+1 the first time: the statement is prepared, once per connection)
        assert enqueue.round_trips <= 2, enqueue.describe()
        with counter.measure() as enqueue:
            app.enqueue_many(work.prepare(n) for n in range(COPY_FROM - 1, jobs))
        assert enqueue.statements == 4, enqueue.describe()
        assert enqueue.round_trips <= 5, enqueue.describe()
        steps = ("BEGIN", "WITH seq", "COPY", "COMMIT")
        order = [[step in text for step in steps].index(True) for text in enqueue.texts]
        assert order == [0, 1, 2, 3], enqueue.describe()

        later = utcnow() + timedelta(hours=1)
        with counter.measure() as hot:
            for _ in range(jobs // batch):
                claimed = backend.reserve(worker_id, queues, batch, now=utcnow())
                started = backend.mark_started(worker_id, [job.id for job in claimed], now=utcnow())
                outcomes = []
                for job in started:
                    finished = utcnow()
                    if job.id % 3 == 0:
                        outcomes.append(Outcome(job.id, job.attempts, "succeeded", finished, "1"))
                    elif job.id % 3 == 1:
                        outcomes.append(
                            Outcome(
                                job.id, job.attempts, "failed", finished, error="x", retry_at=later
                            )
                        )
                    else:
                        outcomes.append(
                            Outcome(job.id, job.attempts, "failed", finished, error="y")
                        )
                assert backend.finish(worker_id, outcomes, now=utcnow()) == []
        batches = jobs // batch
        # Reserve, start and finish: one statement each per batch, whatever its size.
        assert hot.statements == 3 * batches, hot.describe()
        # psycopg prepares a statement it runs often: one extra round trip, once each.
        assert hot.round_trips <= hot.statements + 3, hot.describe()

        every = app.jobs(limit=None)
        assert len(every) == jobs
        assert {job.status for job in every} == {"succeeded", "queued", "failed"}
        for job in every:
            assert check_history(app.events(job.id), job.status) == [], job
    finally:
        app.close()


@pytest.mark.parametrize("queues", [(), ("default", "other")], ids=["any-queue", "by-queue"])
def test_the_exchange_hot_path_is_one_statement_per_batch(
    queues: tuple[str, ...], pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs, batch = 400, 50
    counter = TrafficCounter(monkeypatch)
    app = App(pg_dsn)

    @app.task(name="work")
    def work(n: int) -> int:
        return n

    try:
        backend = app.backend
        worker_id = backend.register_worker(worker_info(queues=queues), now=utcnow())
        app.enqueue_many(work.prepare(n) for n in range(jobs))

        calls = 0
        with counter.measure() as hot:
            outcomes: list[Outcome] = []
            while True:
                # Record the last batch's outcomes, claim and start the next batch.
                exchanged = backend.exchange(
                    worker_id,
                    outcomes=outcomes,
                    start_ids=[],
                    claim=batch,
                    start_claimed=batch,
                    queues=queues,
                    now=utcnow(),
                )
                calls += 1
                assert exchanged.rejected == []
                assert exchanged.reserved == []
                outcomes = [
                    Outcome(job.id, job.attempts, "succeeded", utcnow(), str(job.args[0]))
                    for job in exchanged.started
                ]
                if not outcomes:
                    break
        assert calls == jobs // batch + 1
        assert hot.statements == calls, hot.describe()
        assert hot.round_trips <= hot.statements + 1, hot.describe()

        every = app.jobs(limit=None)
        assert [job.status for job in every] == ["succeeded"] * jobs
        assert sorted(job.result for job in every) == sorted(range(jobs))
        for job in every:
            assert check_history(app.events(job.id), job.status) == [], job
    finally:
        app.close()


# -- the claim query's plan -----------------------------------------------------------------


def plan_nodes(plan: Any) -> Iterator[dict[str, Any]]:
    if isinstance(plan, dict):
        if "Node Type" in plan:
            yield plan
        for value in plan.values():
            yield from plan_nodes(value)
    elif isinstance(plan, list):
        for item in plan:
            yield from plan_nodes(item)


def captured_statement(monkeypatch: pytest.MonkeyPatch, call: Any) -> tuple[str, Any]:
    """The one statement (with its parameters) that ``call()`` sends with a claim in it."""
    sent: list[tuple[Any, Any]] = []
    real_execute = psycopg.Cursor.execute

    def execute(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        sent.append((query.decode() if isinstance(query, bytes) else str(query), params))
        return real_execute(self, query, params, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(psycopg.Cursor, "execute", execute)
        call()
    claims = [(query, params) for query, params in sent if "claimable_jobs" in query]
    assert len(claims) == 1, sent
    return claims[0]


@pytest.mark.parametrize("queues", [(), ("default",)], ids=["any-queue", "by-queue"])
@pytest.mark.parametrize("method", ["reserve", "exchange"])
def test_the_claim_reads_the_partial_index_and_never_scans_finished_jobs(
    method: str,
    queues: tuple[str, ...],
    apps: Apps,
    pg_dsn: str,
    pg_server: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schema = schema_of(pg_dsn)
    jobs_table = sql.Identifier(schema, "jobs")
    backend = apps.backend
    with psycopg.connect(pg_server, autocommit=True) as conn:
        # A long history: 50,000 finished jobs, and a few queued ones.
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (task, queue, status, attempts, run_at, created_at, started_at,"
                " finished_at, result)"
                " SELECT 'echo', 'default', CASE WHEN n % 10 = 0 THEN 'failed' ELSE 'succeeded' END,"
                " 1, now(), now(), now(), now(), 'null' FROM generate_series(1, 50000) n"
            ).format(jobs_table)
        )
        apps.app.enqueue_many(apps.echo.prepare(n) for n in range(20))
        conn.execute(sql.SQL("ANALYZE {}").format(jobs_table))
        worker_id = backend.register_worker(worker_info(queues=queues), now=utcnow())

        if method == "reserve":
            query, params = captured_statement(
                monkeypatch, lambda: backend.reserve(worker_id, queues, 10, now=utcnow())
            )
        else:  # a worker's steady state: record two outcomes, start and claim more
            running = backend.mark_started(
                worker_id,
                [job.id for job in backend.reserve(worker_id, queues, 2, now=utcnow())],
                now=utcnow(),
            )
            outcomes = [
                Outcome(job.id, job.attempts, "succeeded", utcnow(), "null") for job in running
            ]
            query, params = captured_statement(
                monkeypatch,
                lambda: backend.exchange(
                    worker_id,
                    outcomes=outcomes,
                    start_ids=[],
                    claim=10,
                    start_claimed=2,
                    queues=queues,
                    now=utcnow(),
                ),
            )
        on_jobs = explain_analyze(conn, query, params)
    summary = [(n["Node Type"], n.get("Index Name")) for n in on_jobs]
    assert not [n for n in on_jobs if n["Node Type"] == "Seq Scan"], summary
    assert [
        n
        for n in on_jobs
        if n["Node Type"] in ("Index Scan", "Index Only Scan")
        and str(n.get("Index Name", "")).startswith("jobs_claim")
    ], summary
    assert rows_read(on_jobs) < 1000, summary  # of 50,020


def explain_analyze(conn: psycopg.Connection[Any], query: str, params: Any) -> list[dict[str, Any]]:
    """The plan nodes reading ``jobs`` when ``query`` runs (in a transaction rolled back),
    the claim function's own statement included: auto_explain reports nested statements,
    as notices on this connection."""
    notices: list[str] = []
    conn.add_notice_handler(lambda diagnostic: notices.append(diagnostic.message_primary or ""))
    conn.autocommit = False
    try:
        conn.execute("LOAD 'auto_explain'")
        for setting in (
            "auto_explain.log_min_duration = 0",
            "auto_explain.log_analyze = on",
            "auto_explain.log_nested_statements = on",
            "auto_explain.log_format = json",
            "client_min_messages = log",
        ):
            conn.execute(f"SET LOCAL {setting}")
        # the backend sends its statements with PostgreSQL's own $n placeholders
        cursor = psycopg.RawCursor(conn) if isinstance(params, list) else conn.cursor()
        cursor.execute(query, params)
    finally:
        conn.rollback()
        conn.autocommit = True
    plans = [
        json.loads(message[message.index("{") :])
        for message in notices
        if message.startswith("duration:") and "{" in message
    ]
    assert plans, notices
    return [
        node for plan in plans for node in plan_nodes(plan) if node.get("Relation Name") == "jobs"
    ]


def rows_read(nodes: list[dict[str, Any]]) -> int:
    """Rows the scans among ``nodes`` fetched, whether they kept them or filtered them out."""
    return sum(
        (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0))
        * node.get("Actual Loops", 1)
        for node in nodes
        if "Scan" in node["Node Type"]
    )


@pytest.mark.parametrize("method", ["reserve", "exchange"])
def test_a_worker_of_one_queue_never_reads_another_queues_backlog(
    method: str, apps: Apps, pg_dsn: str, pg_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs_table = sql.Identifier(schema_of(pg_dsn), "jobs")
    backend = apps.backend
    with psycopg.connect(pg_server, autocommit=True) as conn:
        # 50,000 jobs waiting in "bulk", all due before the 5,000 in "default".
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (task, queue, status, run_at, created_at)"
                " SELECT 'echo', 'bulk', 'queued', now() - interval '1 hour', now()"
                " FROM generate_series(1, 50000)"
            ).format(jobs_table)
        )
        apps.app.enqueue_many(apps.echo.prepare(n, queue="default") for n in range(5000))
        conn.execute(sql.SQL("ANALYZE {}").format(jobs_table))
        worker_id = backend.register_worker(worker_info(queues=("default",)), now=utcnow())

        claimed: list[Any] = []
        if method == "reserve":
            query, params = captured_statement(
                monkeypatch,
                lambda: claimed.extend(backend.reserve(worker_id, ["default"], 5, now=utcnow())),
            )
        else:
            query, params = captured_statement(
                monkeypatch,
                lambda: claimed.extend(
                    backend.exchange(
                        worker_id,
                        outcomes=[],
                        start_ids=[],
                        claim=5,
                        start_claimed=5,
                        queues=["default"],
                        now=utcnow(),
                    ).started
                ),
            )
        assert [job.queue for job in claimed] == ["default"] * 5
        on_jobs = explain_analyze(conn, query, params)
    summary = [(n["Node Type"], n.get("Index Name"), rows_read([n])) for n in on_jobs]
    assert rows_read(on_jobs) < 1000, summary  # not the 50,000 of "bulk"


# -- losing the connection --------------------------------------------------------------------

SECRET = "tt-secret-password"


def with_password(dsn: str) -> str:
    """``dsn`` with a password in it (trust authentication ignores it)."""
    parts = urlsplit(dsn)
    if parts.password:
        return dsn
    netloc = parts.netloc.rpartition("@")
    user = netloc[0] or "postgres"
    return parts._replace(netloc=f"{user}:{SECRET}@{netloc[2]}").geturl()


@pytest.fixture
def secret_dsn(pg_dsn: str) -> str:
    dsn = with_password(pg_dsn)
    try:
        open_backend(dsn).close()
    except BackendUnavailable:
        pytest.skip("this server does not accept a DSN with an extra password")
    return dsn


def server_pids(conn: psycopg.Connection[Any]) -> set[int]:
    """Server processes of this test process's tasktrail connections."""
    name = f"tasktrail {socket.gethostname()}:{os.getpid()}"
    return {
        row[0]
        for row in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (name,)
        )
    }


CALLS: dict[str, Any] = {
    "get_job": lambda backend, apps: backend.get_job(1),
    "list_workers": lambda backend, apps: backend.list_workers(),
    "enqueue": lambda backend, apps: backend.enqueue([apps.echo.prepare("x")], now=utcnow()),
    "recover_lost": lambda backend, apps: backend.recover_lost(now=utcnow()),
    "unregister_worker (a transaction)": lambda backend, apps: backend.unregister_worker(
        12345, now=utcnow()
    ),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_lost_connection_raises_backend_unavailable_then_reconnects(
    call: str, secret_dsn: str, pg_server: str, apps: Apps
) -> None:
    with psycopg.connect(pg_server, autocommit=True) as admin:
        before = server_pids(admin)
        backend = open_backend(secret_dsn)
        try:
            (pid,) = server_pids(admin) - before
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            deadline = time.monotonic() + DEADLINE
            while pid in server_pids(admin):
                assert time.monotonic() < deadline, f"server process {pid} did not end"
                time.sleep(0.01)

            with pytest.raises(BackendUnavailable) as raised:
                CALLS[call](backend, apps)
            message = str(raised.value)
            assert "lost the connection to PostgreSQL at postgresql://" in message
            assert ":***@" in message
            password = urlsplit(secret_dsn).password or SECRET
            assert password not in message
            assert password not in repr(raised.value.__cause__)

            # The next call opens a new connection and works.
            CALLS[call](backend, apps)
            (enqueued,) = backend.enqueue([apps.echo.prepare("after")], now=utcnow())
            job = backend.get_job(enqueued.id)
            assert job is not None and job.args == ["after"]
            assert len(server_pids(admin) - before) == 1
        finally:
            backend.close()


def test_an_unreachable_server_is_reported_without_the_password() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dsn = f"postgresql://someone:{SECRET}@127.0.0.1:{port}/nowhere?schema=tt_test_x"
    with pytest.raises(BackendUnavailable) as raised:
        App(dsn).backend  # noqa: B018
    message = str(raised.value)
    assert message.startswith(
        f"cannot connect to PostgreSQL at postgresql://someone:***@127.0.0.1:{port}"
    )
    assert SECRET not in message


# -- NUL characters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("a\x00b",), {}),
        ((), {"text": "\x00"}),
        (([{"key\x00": 1}],), {}),
        ((["nested", ["deep\x00er"]],), {}),
    ],
    ids=["argument", "keyword", "dict-key", "nested"],
)
def test_nul_characters_in_arguments_come_back_exactly(
    args: tuple[Any, ...], kwargs: dict[str, Any], apps: Apps
) -> None:
    # Job data is stored as json (text), not jsonb, which could not hold U+0000.
    handle = apps.echo.enqueue(*args, **kwargs)
    job = apps.app.job(handle.id)
    assert job.args == list(args)
    assert job.kwargs == kwargs


def test_text_that_only_looks_like_a_nul_escape_is_stored_unchanged(apps: Apps) -> None:
    tricky = ["\\u0000", "\\\\u0000", "u0000", "\\\\\\u0000x"]
    handle = apps.echo.enqueue(*tricky, note="\\u0000")
    job = apps.app.job(handle.id)
    assert job.args == tricky
    assert job.kwargs == {"note": "\\u0000"}


def test_outcomes_holding_nul_characters_are_recorded_not_lost(apps: Apps) -> None:
    backend = apps.backend
    handles = apps.app.enqueue_many(apps.echo.prepare(n) for n in range(3))
    worker_id = backend.register_worker(worker_info(), now=utcnow())
    claimed = backend.reserve(worker_id, [], 3, now=utcnow())
    started = {
        job.id: job
        for job in backend.mark_started(worker_id, [j.id for j in claimed], now=utcnow())
    }
    ok, bad_result, bad_error = (started[h.id] for h in handles)
    now = utcnow()
    outcomes = [
        Outcome(ok.id, ok.attempts, "succeeded", now, result_json='"fine"'),
        Outcome(bad_result.id, bad_result.attempts, "succeeded", now, result_json='"a\\u0000b"'),
        Outcome(
            bad_error.id,
            bad_error.attempts,
            "failed",
            now,
            error="ValueError: a\x00b",
            detail={"traceback": "line\x00line", "reason": "error"},
        ),
    ]

    assert backend.finish(worker_id, outcomes, now=now) == []

    assert apps.app.job(ok.id).status == "succeeded"
    assert apps.app.job(ok.id).result == "fine"
    nul_result = apps.app.job(bad_result.id)
    assert (nul_result.status, nul_result.result) == ("succeeded", "a\x00b")
    errored = apps.app.job(bad_error.id)
    assert errored.status == "failed"
    # a text column cannot hold NUL: the error shows U+FFFD there...
    assert errored.error == "ValueError: a\ufffdb"
    # ...while the history's JSON detail keeps the exact text
    last = apps.app.events(bad_error.id)[-1]
    assert last.detail["traceback"] == "line\x00line"
    assert last.detail["error"] == "ValueError: a\x00b"
    for handle in handles:
        job = apps.app.job(handle.id)
        assert check_history(apps.app.events(handle.id), job.status) == []


def test_a_cancel_reason_with_a_nul_character_is_recorded(apps: Apps) -> None:
    handle = apps.echo.enqueue("x")
    assert apps.app.cancel(handle.id, reason="because\x00").status == "cancelled"
    assert apps.app.events(handle.id)[-1].detail["reason"] == "because\x00"


# -- session settings -------------------------------------------------------------------------


def test_the_backend_session_never_jit_compiles_and_plans_generically(apps: Apps) -> None:
    """A claim over a million queued jobs was JIT-compiled on every call (2 s each, for
    a statement that runs in milliseconds): the backend's sessions turn JIT off."""
    backend: Any = apps.backend
    with backend._connection() as conn:
        settings = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]
            for name in ("jit", "plan_cache_mode", "TimeZone")
        }
    assert settings == {"jit": "off", "plan_cache_mode": "force_generic_plan", "TimeZone": "UTC"}


# -- a claim racing the recovery of its own worker ---------------------------------------


def test_a_claim_waits_for_a_recovery_of_its_worker_and_then_takes_nothing(
    apps: Apps, pg_server: str, pg_dsn: str
) -> None:
    """A worker that was declared lost (its lease expired: a frozen process, a partition)
    may claim at the very moment another worker recovers it. The claim waits for that
    recovery and, once it is committed, takes nothing: a job claimed for a worker already
    declared lost would be taken back by nobody."""
    import threading

    backend = apps.backend
    worker = backend.register_worker(worker_info(), now=utcnow())
    handle = apps.echo.enqueue(1)
    schema = schema_of(pg_dsn)
    result: dict[str, Any] = {}

    def claim() -> None:
        result["started"] = backend.exchange(
            worker, outcomes=(), start_ids=(), claim=1, start_claimed=1, queues=(),
            now=utcnow(),
        ).started  # fmt: skip

    with psycopg.connect(pg_server) as recovery:
        # what mark_expired_workers_lost does, held open: the worker row is locked
        recovery.execute(
            sql.SQL("UPDATE {} SET status = 'lost', stopped_at = now() WHERE id = %s").format(
                sql.Identifier(schema, "workers")
            ),
            (worker,),
        )
        claimer = threading.Thread(target=claim)
        claimer.start()
        deadline = time.monotonic() + DEADLINE
        with psycopg.connect(pg_server, autocommit=True) as watcher:
            while time.monotonic() < deadline and claimer.is_alive():
                waiting = watcher.execute(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype IN "
                    "('tuple', 'transactionid')"
                ).fetchone()
                if waiting and waiting[0]:
                    break
                time.sleep(0.01)
        assert claimer.is_alive(), f"the claim did not wait for the recovery: {result}"
        recovery.commit()
    claimer.join(DEADLINE)
    assert not claimer.is_alive()
    assert result["started"] == []
    assert apps.app.job(handle.id).status == "queued"


# -- fan-in ---------------------------------------------------------------------------------


def test_a_job_ending_while_a_transaction_enqueues_one_waiting_for_it_waits_for_that_commit(
    apps: Apps, pg_server: str, pg_dsn: str
) -> None:
    """The race fan-in must not lose: the waiting job's transaction has not committed when
    the job it waits for ends. The end waits for that transaction (it holds the row it
    counts its dependents on), then releases the new job: it is never left waiting."""
    import threading

    backend = apps.backend
    parent = apps.echo.enqueue()
    worker = backend.register_worker(worker_info(), now=utcnow())
    backend.exchange(
        worker, outcomes=(), start_ids=(), claim=1, start_claimed=1, queues=[], now=utcnow()
    )
    running = backend.get_job(parent.id)
    assert running is not None and running.status == "running"
    ended: dict[str, Any] = {}

    def end_it() -> None:
        other = open_backend(pg_dsn)
        try:
            outcome = Outcome(running.id, running.attempts, "succeeded", utcnow(), "null")
            ended["rejected"] = other.finish(worker, [outcome], now=utcnow())
        finally:
            other.close()

    with psycopg.connect(pg_server) as conn:
        child = apps.echo.enqueue(after=[parent], connection=conn)
        thread = threading.Thread(target=end_it)
        thread.start()
        deadline = time.monotonic() + DEADLINE
        with psycopg.connect(pg_server, autocommit=True) as watcher:
            while not watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"
            ).fetchone()[0]:  # type: ignore[index]
                assert time.monotonic() < deadline, "the end never waited for the enqueue"
                time.sleep(0.01)
        assert thread.is_alive() and "rejected" not in ended
        conn.commit()
    thread.join(DEADLINE)
    assert ended == {"rejected": []}
    assert apps.app.job(child.id).status == "queued"
    assert [e.kind for e in apps.app.events(child.id)] == ["enqueued", "waiting", "ready"]


def test_outcomes_releasing_the_same_keys_in_either_order_never_deadlock(
    apps: Apps, pg_dsn: str, pg_server: str
) -> None:
    """Two workers each end a job of key a and one of key b, listed in opposite orders,
    while a third session holds b's row of job_limits: the exchanges lock a, then b, in
    that order, so one waits for the other instead of both for each other (PostgreSQL
    would fail one as a deadlock; its counter for the database stays as it was)."""
    import threading

    backend = apps.backend
    keyed = [
        NewJob("echo", "default", "[]", "{}", None, 0, 1, None, None)._replace(
            lock_key=key, lock_limit=2
        )
        for key in ("a", "b", "a", "b")
    ]
    a1, b1, a2, b2 = [item.id for item in backend.enqueue(keyed, now=utcnow())]
    one = backend.register_worker(worker_info("one"), now=utcnow())
    two = backend.register_worker(worker_info("two"), now=utcnow())
    held: dict[int, list[Job]] = {}
    for worker in (one, two):
        reserved = backend.reserve(worker, [], 2, now=utcnow())
        held[worker] = backend.mark_started(worker, [job.id for job in reserved], now=utcnow())
    assert [[job.id for job in held[w]] for w in (one, two)] == [[a1, b1], [a2, b2]]
    schema = schema_of(pg_dsn)
    results: dict[int, Any] = {}

    def finish(worker: int, jobs: list[Job]) -> None:
        own = open_backend(pg_dsn)
        try:
            outcomes = [
                Outcome(job.id, job.attempts, "succeeded", utcnow(), "null") for job in jobs
            ]
            results[worker] = own.finish(worker, outcomes, now=utcnow())
        except Exception as exc:  # reported by the assertion below
            results[worker] = exc
        finally:
            own.close()

    def deadlocks(conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        return int(row[0]) if row else 0

    with psycopg.connect(pg_server, autocommit=True) as watcher:
        watcher.execute("SELECT pg_stat_clear_snapshot()")
        before = deadlocks(watcher)
        with psycopg.connect(pg_server) as blocker:
            blocker.execute(
                sql.SQL("SELECT 1 FROM {} WHERE lock_key = 'b' FOR UPDATE").format(
                    sql.Identifier(schema, "job_limits")
                )
            )
            threads = []
            for worker, jobs in ((one, [held[one][1], held[one][0]]), (two, held[two])):
                thread = threading.Thread(target=finish, args=(worker, jobs))
                thread.start()
                threads.append(thread)
                waiting = len(threads)
                deadline = time.monotonic() + DEADLINE
                while (
                    watcher.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND datname = current_database()"
                    ).fetchone()[0]
                    < waiting
                ):  # type: ignore[index]
                    assert time.monotonic() < deadline, f"exchange {waiting} never waited"
                    time.sleep(0.01)
            blocker.rollback()
        for thread in threads:
            thread.join(DEADLINE)
        assert results == {one: [], two: []}
        watcher.execute("SELECT pg_stat_clear_snapshot()")
        assert deadlocks(watcher) == before
    for job_id in (a1, b1, a2, b2):
        assert apps.app.job(job_id).status == "succeeded"
