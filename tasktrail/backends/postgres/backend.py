"""The PostgreSQL backend (psycopg 3).

Every state change is one statement that also writes the history events (CTEs), run in
autocommit mode: one round trip per batch of jobs. Claiming uses
``FOR UPDATE SKIP LOCKED`` over partial indexes of queued jobs only. Idle workers wait
on ``LISTEN`` (a trigger notifies on every insert); polling is the fallback.

The SQL is in ``tasktrail/sql/postgres/``; the word ``tasktrail`` in it names the schema
and is replaced by the configured one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import tuple_row

from ...config import PostgresDsn, redact_dsn
from ...errors import (
    BackendUnavailable,
    InvalidArguments,
    InvalidTransition,
    PermissionDenied,
    SchemaError,
)
from ...job import (
    FINAL_STATUSES,
    Enqueued,
    Event,
    HeldJob,
    Job,
    NewJob,
    Outcome,
    QueueState,
    WorkerInfo,
    WorkerRecord,
)
from ...schedule import ScheduleDef, ScheduleRecord, Tick
from .._sql import read_sql
from ..base import (
    Backend,
    Exchange,
    JobFilter,
    PruneReport,
    RecoveredJob,
    TaskStats,
    WorkerControl,
)
from ..borrowed import driver_connection
from ..common import (
    LOST_ERROR_TEMPLATE,
    after_cancel_request,
    after_links,
    check_after,
    new_job_columns,
    outcome_events,
    raise_transition_error,
    transition,
    with_roots,
)
from ..records import held
from ..ticks import fire_due
from . import reads, rows, schedules
from .sql import SCHEMA_VERSION, migrations, native_queries, render, rendered_queries

__all__ = ["PostgresBackend"]

#: How often a claim is tried again after colliding with another worker on a lock key.
_CLAIM_ATTEMPTS = 5


class Collided(BackendUnavailable):
    """A statement chosen by PostgreSQL to fail a deadlock: rolled back, nothing written.
    The exchange tries again; to anyone else it is a passing failure, as an outage is."""


def _outcome_params(outcomes: Sequence[Outcome], worker_id: int, now: datetime) -> dict[str, Any]:
    """The ``outcomes`` and ``events`` JSON documents of the ``exchange`` statement.

    Each outcome comes with the change it makes and, for a job whose cancellation was
    asked meanwhile, the change :func:`after_cancel_request` makes instead; its events
    are tagged ``both``, or ``applied`` and ``cancelling`` where the two differ; the one
    event of a refused outcome rides on the outcome itself, and so does the one event of
    a plain success, which has no cancelling variant. The statement applies and
    writes whichever matches what it finds under its fence. JSON documents, not arrays of
    parameters: one string to send, parsed by the server in C. Each document is built as
    JSON text, the common case (a plain success) without building a dict first.
    """
    documents: list[str] = []
    events: list[str] = []
    for outcome in outcomes:
        if (
            outcome.kind == "succeeded"
            and outcome.error is None
            and outcome.detail.keys() <= {"runtime"}
        ):
            _add_success(outcome, worker_id, documents)
        else:
            _add_outcome(outcome, worker_id, now, documents, events)
    return {
        "worker_id": worker_id,
        "outcomes": f"[{','.join(documents)}]",
        "events": f"[{','.join(events)}]",
    }


#: From this many jobs (none of them unique) a batch is written by COPY: four statements
#: (BEGIN, the ids and events, the COPY, COMMIT) instead of one, but less work per job.
COPY_FROM = 100
#: The binary COPY types of ``copy_jobs``' columns (json goes as its text).
_COPY_JOB_TYPES = [
    "text", "text", "text", "text", "int2", "text", "text", "int4", "float8", "text", "text",
    "int4", "text", "int4", "float8", "int8", "int8", "text", "int8", "text", "timestamptz",
    "timestamptz",
]  # fmt: skip


def _atomic(conn: psycopg.Connection[Any]) -> contextlib.AbstractContextManager[Any]:
    """Several statements as one: inside the transaction the connection is in, or will
    be in (one that is not in autocommit begins it with the first statement, and its
    owner commits or rolls it back), else in a transaction of their own."""
    idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    return conn.transaction() if idle and conn.autocommit else contextlib.nullcontext()


def _one_params(job: NewJob, now: datetime) -> dict[str, Any]:
    """The parameters of ``enqueue_one``."""
    return {**new_job_columns(job), "run_at": job.run_at, "now": now}


def _add_outcome(
    outcome: Outcome,
    worker_id: int,
    now: datetime,
    documents: list[str],
    events: list[str],
) -> None:
    """One outcome's document and events (see :func:`_outcome_params`)."""
    cancelling = after_cancel_request(outcome)
    change, c_change = transition(outcome), transition(cancelling)
    finished = outcome.finished_at.isoformat()
    document = {
        "job_id": outcome.job_id,
        "attempt": outcome.attempt,
        "result": outcome.result_json,
        "status": change.status,
        "ended_at": finished if change.status in FINAL_STATUSES else None,
        "error": rows.text_without_nul(outcome.error),
        "run_at": change.run_at.isoformat() if change.run_at else None,
        "extra_attempts": change.extra_attempts,
        "c_status": c_change.status,
        "c_ended_at": finished if c_change.status in FINAL_STATUSES else None,
        "c_error": rows.text_without_nul(cancelling.error),
        "c_run_at": c_change.run_at.isoformat() if c_change.run_at else None,
        "c_extra_attempts": c_change.extra_attempts,
        "child_pid": outcome.child_pid,
    }
    [(_, _, rejected_detail)] = outcome_events(outcome, False, worker_id, now)
    # Details travel as JSON text inside the document, so that a NUL escaped in them
    # stays an escape (the document itself is parsed into text fields).
    document["rejected_detail"] = json.dumps(rejected_detail)
    documents.append(json.dumps(document))
    variants = [("both", outcome)]
    if cancelling is not outcome:
        variants = [("applied", outcome), ("cancelling", cancelling)]
    for which, variant in variants:
        for at, kind, detail in outcome_events(variant, True, worker_id, now):
            event = {
                "job_id": outcome.job_id,
                "at": at.isoformat(),
                "kind": kind,
                "attempt": outcome.attempt,
                "detail": json.dumps(detail) if detail else None,
                "which": which,
                "ord": len(events),
                "child_pid": outcome.child_pid,
            }
            events.append(json.dumps(event))


def _add_success(outcome: Outcome, worker_id: int, documents: list[str]) -> None:
    """The document of a plain success (the hot path's common case), written directly as
    JSON text: :func:`_add_outcome`'s, less what the statement does without: the
    cancelling variant, which would be the same, and a separate event document for its
    one event, ``succeeded`` at ``ended_at`` with the run time."""
    finished = outcome.finished_at.isoformat()
    runtime = outcome.detail.get("runtime")
    if type(runtime) is float and math.isfinite(runtime):
        # (a float's repr is its JSON form)
        detail: str | None = f'{{"runtime": {runtime!r}}}'
        rejected = f'{{"runtime": {runtime!r}, "outcome": "succeeded", "worker_id": {worker_id}}}'
    else:
        detail = json.dumps(outcome.detail) if outcome.detail else None
        rejected = json.dumps({**outcome.detail, "outcome": "succeeded", "worker_id": worker_id})
    child_pid = "null" if outcome.child_pid is None else int(outcome.child_pid)
    documents.append(
        _SUCCESS_DOCUMENT
        % (
            int(outcome.job_id), int(outcome.attempt), _json_text(outcome.result_json),
            finished, _json_text(rejected), _json_text(detail), child_pid,
        )
    )  # fmt: skip


def _json_text(text: str | None) -> str:
    """A string as JSON, or null (C-accelerated: no encoder object involved)."""
    return "null" if text is None else _quote(text)


_quote = json.encoder.encode_basestring_ascii
#: A new job's fields that are never null (``_insert_params`` closes the object).
_JOB_DOCUMENT = (
    '{"ord":%d,"task":%s,"queue":%s,"priority":%d,"args":%s,"kwargs":%s,"max_attempts":%d'
)
#: A plain success: no cancelling variant (a cancel request changes nothing about a
#: success), and its one event rides on the document.
_SUCCESS_DOCUMENT = (
    '{"job_id":%d,"attempt":%d,"result":%s,"status":"succeeded","ended_at":"%s",'
    '"rejected_detail":%s,"event":"succeeded","event_detail":%s,"child_pid":%s}'
)


class PostgresBackend(Backend):
    """Jobs in a PostgreSQL schema. See the module docstring."""

    kind = "postgresql"

    def __init__(self, dsn: PostgresDsn, *, connect_timeout: float = 10.0) -> None:
        super().__init__()
        self.dsn = dsn
        self.schema = dsn.schema
        self.url = f"{redact_dsn(dsn.conninfo)} (schema {dsn.schema})"
        self._connect_timeout = connect_timeout
        self._q = rendered_queries(dsn.schema)
        self._native = native_queries(dsn.schema)
        self._conn: psycopg.Connection[Any] | None = None
        self._listener: psycopg.Connection[Any] | None = None
        self._conn = self._connect()

    # -- connections ----------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(
                self.dsn.conninfo,
                autocommit=True,
                connect_timeout=max(1, int(self._connect_timeout)),
                application_name=f"tasktrail {socket.gethostname()}:{os.getpid()}",
            )
            conn.execute("SET TIME ZONE 'UTC'")
            # The statements are written so that one plan fits every call (index look-ups
            # by id, the claim function walking its index): plan them once, not per call.
            conn.execute("SET plan_cache_mode = force_generic_plan")
            # A generic plan over a big backlog is costed high enough to be JIT-compiled
            # on every call: with 1,000,000 queued jobs that took 2 s per claim for a
            # statement that runs in milliseconds. Nothing here gains from JIT.
            conn.execute("SET jit = off")
            conn.prepare_threshold = 0
        except psycopg.Error as exc:
            raise BackendUnavailable(
                f"cannot connect to PostgreSQL at {self.url}: {_first_line(exc)}"
            ) from exc
        return conn

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """The connection, reopened if it was lost; connection errors become
        :class:`BackendUnavailable` and leave it to be reopened on the next call."""
        self._check_process()
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
            self._conn = None
            self._conn = self._connect()
        try:
            yield self._conn
        except psycopg.errors.DeadlockDetected as exc:
            # (an OperationalError, but not an outage: the statement was chosen to fail
            # and rolled back; the exchange tries it again)
            raise Collided(f"PostgreSQL at {self.url}: {_first_line(exc)}") from exc
        except psycopg.OperationalError as exc:
            if self._conn is not None and (self._conn.broken or self._conn.closed):
                raise BackendUnavailable(
                    f"lost the connection to PostgreSQL at {self.url}: {_first_line(exc)}"
                ) from exc
            raise BackendUnavailable(f"PostgreSQL at {self.url}: {_first_line(exc)}") from exc
        except psycopg.errors.InsufficientPrivilege as exc:
            raise PermissionDenied(
                f"PostgreSQL at {self.url} refused it: {_first_line(exc)}; the role in the "
                "DSN lacks that privilege (the roles are described in docs/security.md)"
            ) from exc
        except psycopg.errors.UndefinedTable as exc:
            raise SchemaError(
                f"the tasktrail schema {self.schema!r} is missing or incomplete in "
                f"{self.url}: run `tasktrail migrate` ({_first_line(exc)})"
            ) from exc

    def _fetch(self, name: str, params: dict[str, Any]) -> list[Any]:
        statement = self._native[name]
        with self._connection() as conn, psycopg.RawCursor(conn, row_factory=tuple_row) as cur:
            return cur.execute(statement.text, statement.values(params)).fetchall()

    def close(self) -> None:
        if os.getpid() != self.owner_pid:
            return
        for conn in (self._listener, self._conn):
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
        self._listener = None
        self._conn = None

    # -- schema ---------------------------------------------------------------------

    def schema_version(self) -> int | None:
        try:
            with self._connection() as conn:
                exists = conn.execute(
                    "SELECT to_regclass(%s) IS NOT NULL", (f'"{self.schema}".migrations',)
                ).fetchone()
                if not exists or not exists[0]:
                    return None
                row = conn.execute(self._q["schema_version"]).fetchone()
        except PermissionDenied as exc:
            raise SchemaError(
                f"cannot read the tasktrail schema {self.schema!r} in {self.url}: this role "
                "has no access to it; grant it the producer or worker role "
                "(docs/security.md)"
            ) from exc
        return int(row[0]) if row and row[0] is not None else None

    def migrate(self) -> list[int]:
        """Apply the pending migrations; return the versions applied.

        One transaction under an advisory lock, so two hosts migrating at once apply
        each migration once and the loser waits, then finds nothing to do.
        """
        applied: list[int] = []
        with self._connection() as conn, conn.transaction():
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"tasktrail:{self.schema}",)
            )
            # Only if missing: CREATE SCHEMA IF NOT EXISTS still needs CREATE on the
            # database, which the schema's owner need not have.
            missing = not conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)
            ).fetchone()
            if missing:
                conn.execute(pgsql.SQL("CREATE SCHEMA {}").format(pgsql.Identifier(self.schema)))
            conn.execute(
                render(
                    "CREATE TABLE IF NOT EXISTS tasktrail.migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())",
                    self.schema,
                ).encode()
            )
            done = {
                row[0]
                for row in conn.execute(
                    render("SELECT version FROM tasktrail.migrations", self.schema).encode()
                )
            }
            for version, filename in migrations():
                if version in done:
                    continue
                script = render(read_sql("postgres", f"migrations/{filename}"), self.schema)
                conn.execute(script.encode(), prepare=False)  # several statements
                conn.execute(
                    render(
                        "INSERT INTO tasktrail.migrations (version, name) VALUES (%s, %s)",
                        self.schema,
                    ).encode(),
                    (version, filename.removesuffix(".sql")[5:]),
                )
                applied.append(version)
        return applied

    def setup(self) -> None:
        version = self.schema_version()
        if version is None or version < SCHEMA_VERSION:
            try:
                self.migrate()
            except PermissionDenied as exc:
                raise SchemaError(
                    f"the tasktrail schema {self.schema!r} in {self.url} is "
                    f"{'missing' if version is None else f'at version {version}'} and this role "
                    "may not create it: have its owner run `tasktrail migrate`"
                ) from exc
            version = self.schema_version()
        if version is not None and version > SCHEMA_VERSION:
            raise SchemaError(
                f"the tasktrail schema {self.schema!r} in {self.url} is at version {version}, "
                f"newer than this tasktrail knows ({SCHEMA_VERSION}); upgrade tasktrail"
            )

    # -- producers ----------------------------------------------------------------

    def enqueue(
        self, jobs: Sequence[NewJob], *, now: datetime, connection: Any = None
    ) -> list[Enqueued]:
        if not jobs:
            return []
        if connection is not None:
            connection = driver_connection(connection, "postgres")
            if not isinstance(connection, psycopg.Connection):
                raise InvalidArguments(
                    "connection= for the PostgreSQL backend must be a psycopg (3) Connection "
                    f"or a SQLAlchemy Connection or Session, got {type(connection).__name__}"
                )
            return self._enqueue_on(connection, jobs, now)
        with self._connection() as conn:
            return self._enqueue_on(conn, jobs, now)

    def _enqueue_on(
        self, conn: psycopg.Connection[Any], jobs: Sequence[NewJob], now: datetime
    ) -> list[Enqueued]:
        """One statement for the batch; more only for unique keys that were taken.

        A unique job whose key is held by an active job is not inserted and names that
        job. If the holder finished between the insert and the look-up, the insert is
        tried again; with unique keys the batch runs in one transaction, so it stays all
        or nothing.
        """

        def roots_of(ids: list[int]) -> dict[int, int]:
            with conn.cursor(row_factory=tuple_row) as cursor:
                return dict(cursor.execute(self._q["job_roots"], {"ids": ids}).fetchall())

        jobs = with_roots(jobs, roots_of)
        if any(job.after for job in jobs):
            check_after(jobs, roots_of)
            with _atomic(conn):
                enqueued = self._enqueue_rows(conn, jobs, now)
                links = after_links(jobs, enqueued)
                if links:
                    with conn.cursor(row_factory=tuple_row) as cursor:
                        params = {"links": json.dumps(links), "now": now}
                        cursor.execute(self._q["wait_for_jobs"], params)
            return enqueued
        return self._enqueue_rows(conn, jobs, now)

    def _enqueue_rows(
        self, conn: psycopg.Connection[Any], jobs: Sequence[NewJob], now: datetime
    ) -> list[Enqueued]:
        if not any(job.unique_key for job in jobs):
            if len(jobs) >= COPY_FROM:
                with _atomic(conn):
                    return self._enqueue_copy(conn, jobs, now)
            if len(jobs) == 1:
                # the common call: the statement in the server's own $n form (no
                # placeholder conversion per call, as for the worker's statements)
                one = self._native["enqueue_one"]
                with psycopg.RawCursor(conn, row_factory=tuple_row) as raw:
                    rows = raw.execute(one.text, one.values(_one_params(jobs[0], now))).fetchall()
            else:
                with conn.cursor(row_factory=tuple_row) as cursor:
                    params = self._insert_params(jobs, now)
                    rows = cursor.execute(self._q["enqueue"], params).fetchall()
            return [Enqueued(job_id, True) for job_id, _ in rows]
        with _atomic(conn):
            return self._enqueue_unique(conn, jobs, now)

    def _enqueue_copy(
        self, conn: psycopg.Connection[Any], jobs: Sequence[NewJob], now: datetime
    ) -> list[Enqueued]:
        """A big batch by binary COPY (see ``new_job_ids`` in queries.sql); the caller
        makes the two statements one transaction."""
        with conn.cursor(row_factory=tuple_row) as cursor:
            params = {"count": len(jobs), "now": now}
            cursor.execute(self._q["new_job_ids"], params, binary=True)
            ids = [job_id for (job_id,) in cursor.fetchall()]
            with cursor.copy(self._q["copy_jobs"]) as copy:
                copy.set_types(_COPY_JOB_TYPES)
                for job_id, job in zip(ids, jobs, strict=True):
                    copy.write_row(
                        (*new_job_columns(job).values(), job_id, "queued", job.run_at or now, now)
                    )
        return [Enqueued(job_id, True) for job_id in ids]

    def _enqueue_unique(
        self, conn: psycopg.Connection[Any], jobs: Sequence[NewJob], now: datetime
    ) -> list[Enqueued]:
        result: dict[int, Enqueued] = {}
        todo = list(range(len(jobs)))
        # The caller's connection may have any row factory (dict_row is common).
        with conn.cursor(row_factory=tuple_row) as cursor:
            for _ in range(10):
                batch = [jobs[index] for index in todo]
                inserted = cursor.execute(
                    self._q["enqueue"], self._insert_params(batch, now)
                ).fetchall()
                by_key = {key: job_id for job_id, key in inserted if key is not None}
                plain = iter(job_id for job_id, key in inserted if key is None)
                taken = [job.unique_key for job in batch if job.unique_key not in by_key]
                active = (
                    dict(
                        (key, job_id)
                        for job_id, key in cursor.execute(self._q["active_unique"], {"keys": taken})
                    )
                    if taken
                    else {}
                )
                seen: set[str] = set()
                left = []
                for index, job in zip(todo, batch, strict=True):
                    key = job.unique_key
                    if key is None:
                        result[index] = Enqueued(next(plain), True)
                    elif key in by_key:
                        result[index] = Enqueued(by_key[key], key not in seen)
                        seen.add(key)
                    elif key in active:
                        result[index] = Enqueued(active[key], False)
                    else:
                        left.append(index)  # its holder just finished: insert it again
                todo = left
                if not todo:
                    return [result[index] for index in range(len(jobs))]
        raise BackendUnavailable(
            "could not enqueue unique jobs: their keys kept changing hands; try again"
        )

    @staticmethod
    def _insert_params(jobs: Sequence[NewJob], now: datetime) -> dict[str, Any]:
        """The ``jobs`` document of ``enqueue``, written as JSON text; fields that are
        null are left out (the server reads them as null)."""
        documents = []
        for index, job in enumerate(jobs):
            text = _JOB_DOCUMENT % (
                index, _quote(job.task), _quote(job.queue), int(job.priority),
                _quote(job.args_json), _quote(job.kwargs_json), int(job.max_attempts),
            )  # fmt: skip
            extra = []
            if job.ref is not None:
                extra.append(f',"ref_type":{_quote(job.ref.type)},"ref_id":{_quote(job.ref.id)}')
            if job.timeout is not None:
                extra.append(f',"timeout":{float(job.timeout)!r}')
            if job.run_at is not None:
                extra.append(f',"run_at":"{job.run_at.isoformat()}"')
            if job.unique_key is not None:
                extra.append(f',"unique_key":{_quote(job.unique_key)}')
            if job.lock_key is not None:
                extra.append(f',"lock_key":{_quote(job.lock_key)}')
            if job.lock_limit is not None:
                extra.append(f',"lock_limit":{int(job.lock_limit)}')
            if job.rate_key is not None:
                extra.append(
                    f',"rate_key":{_quote(job.rate_key)},"rate_limit":{int(job.rate_limit or 1)}'
                    f',"rate_window":{float(job.rate_window or 1.0)!r}'
                )
            if job.parent_id is not None:
                extra.append(f',"parent_id":{int(job.parent_id)},"root_id":{int(job.root_id or 0)}')
            if job.trace_context is not None:
                extra.append(f',"trace_context":{_quote(job.trace_context)}')
            documents.append(f"{text}{''.join(extra)}}}" if extra else f"{text}}}")
        return {"now": now, "jobs": f"[{','.join(documents)}]"}

    def _enqueue_one(self, conn: psycopg.Connection[Any], job: NewJob, now: datetime) -> Enqueued:
        [enqueued] = self._enqueue_on(conn, [job], now)
        return enqueued

    def cancel(self, job_id: int, *, now: datetime, by: str, reason: str | None = None) -> Job:
        detail = json.dumps({"by": by, **({"reason": reason} if reason else {})})
        params = {"job_id": job_id, "now": now, "detail": detail}
        if not self._fetch("cancel_waiting", params) and not self._fetch("request_cancel", params):
            job = self.get_job(job_id)
            if job is None or job.status != "running":
                raise_transition_error(job_id, job.status if job else None, "cancelled")
            return job  # asked already; its worker is on it
        return self._must_get(job_id)

    def cancel_requests(self, worker_id: int) -> list[int]:
        return [row[0] for row in self._fetch("cancel_requests", {"worker_id": worker_id})]

    def retry(self, job_id: int, *, now: datetime, by: str) -> Job:
        try:
            found = self._fetch(
                "retry_job", {"job_id": job_id, "now": now, "detail": json.dumps({"by": by})}
            )
        except psycopg.errors.UniqueViolation:
            holder = self._fetch("unique_key_holder", {"job_id": job_id})
            if not holder:
                raise
            other, status, key = holder[0]
            raise InvalidTransition(
                f"job {job_id} cannot be retried: job {other} with the same unique key "
                f"{key!r} is {status}; wait for it to finish or cancel it"
            ) from None
        if not found:
            status = self._fetch("job_status", {"job_id": job_id})
            raise_transition_error(job_id, status[0][0] if status else None, "retried")
        return self._must_get(job_id)

    # -- workers --------------------------------------------------------------------

    def register_worker(self, info: WorkerInfo, *, now: datetime) -> int:
        rows = self._fetch(
            "register_worker",
            {
                "name": info.name,
                "host": info.host,
                "pid": info.pid,
                "processes": info.processes,
                "reserve": info.reserve,
                "queues": list(info.queues),
                "lease_seconds": info.lease_seconds,
                "now": now,
                "autoscale_min": info.autoscale[0] if info.autoscale else None,
                "autoscale_max": info.autoscale[1] if info.autoscale else None,
            },
        )
        self._listen()
        return int(rows[0][0])

    def heartbeat(self, worker_id: int, *, now: datetime) -> bool:
        alive = bool(self._fetch("heartbeat", {"worker_id": worker_id, "now": now}))
        if alive and self._listener is None:
            self._listen()  # the server is back after an outage: stop polling
        return alive

    def unregister_worker(self, worker_id: int, *, now: datetime) -> None:
        with self._connection() as conn, conn.transaction():
            conn.execute(self._q["unregister_worker"], {"worker_id": worker_id, "now": now})
            conn.execute(
                self._q["take_back"],
                {"worker_ids": [worker_id], "now": now, "error_template": LOST_ERROR_TEMPLATE},
            )
        self._stop_listening()

    def exchange(
        self,
        worker_id: int,
        *,
        outcomes: Sequence[Outcome],
        start_ids: Sequence[int],
        claim: int,
        start_claimed: int,
        queues: Sequence[str],
        now: datetime,
        child_pids: Sequence[int] = (),
    ) -> Exchange:
        params = _outcome_params(outcomes, worker_id, now)
        params.update(
            now=now,
            start_ids=list(start_ids),
            claim=max(0, claim),
            start_claimed=max(0, start_claimed),
            child_pids=list(child_pids),
            any_queue=not queues,
            queues=list(queues),
        )
        for attempt in range(_CLAIM_ATTEMPTS):
            try:
                found = self._fetch("exchange", params)
                break
            except Collided:
                # Claims in two workers at once counted two lock keys' jobs (job_limits) in
                # opposite orders and one was chosen to fail: nothing was written. Try
                # again; in the end, without claiming (outcomes release their keys in
                # the keys' order: two exchanges recording outcomes cannot collide).
                if attempt == _CLAIM_ATTEMPTS - 2:
                    params["claim"] = params["start_claimed"] = 0
        else:  # pragma: no cover - the last attempt claims nothing, so it cannot collide
            raise AssertionError("exchange kept colliding without claiming")
        started: list[HeldJob] = []
        reserved: list[HeldJob] = []
        for row in found:
            if row[1] is None:
                continue  # the one row carrying only `rejected`
            job = held(row[1:])
            (started if job.status == "running" else reserved).append(job)
        return Exchange(rejected=list(found[0][0] or []), started=started, reserved=reserved)

    def release(
        self, worker_id: int, job_ids: Sequence[int], *, now: datetime, reason: str
    ) -> None:
        if not job_ids:
            return
        with self._connection() as conn, conn.transaction():
            released = conn.execute(
                self._q["release"],
                {"ids": list(job_ids), "worker_id": worker_id, "now": now, "reason": reason},
            ).fetchall()
            if released:
                conn.execute(self._q["notify"], {"queues": ["*"]})

    def recover_lost(self, *, now: datetime) -> list[RecoveredJob]:
        if not self._fetch("any_expired_worker", {"now": now})[0][0]:
            return []
        with self._connection() as conn, conn.transaction():
            dead = [
                row[0]
                for row in conn.execute(
                    self._q["mark_expired_workers_lost"],
                    {"now": now},
                )
            ]
            if not dead:
                return []
            rows = conn.execute(
                self._q["take_back"],
                {"worker_ids": dead, "now": now, "error_template": LOST_ERROR_TEMPLATE},
            ).fetchall()
            if rows:
                conn.execute(self._q["notify"], {"queues": ["*"]})
        return [RecoveredJob(row[0], row[1], row[2], row[3]) for row in rows]

    # -- waking up ------------------------------------------------------------------

    def _listen(self) -> None:
        """Open the LISTEN connection (workers only); failures fall back to polling."""
        self._stop_listening()
        try:
            listener = psycopg.connect(
                self.dsn.conninfo,
                autocommit=True,
                connect_timeout=max(1, int(self._connect_timeout)),
            )
            listener.execute(pgsql.SQL("LISTEN {}").format(pgsql.Identifier(self.schema)))
            listener.pgconn.nonblocking = 1
        except psycopg.Error:
            self._listener = None
            return
        self._listener = listener

    def _stop_listening(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):
                self._listener.close()
            self._listener = None

    def wakeup_fileno(self) -> int | None:
        if self._listener is None or self._listener.closed:
            return None
        return self._listener.pgconn.socket

    def consume_wakeups(self) -> bool:
        listener = self._listener
        if listener is None:
            return False
        cancel = False
        try:
            listener.pgconn.consume_input()
            while (notice := listener.pgconn.notifies()) is not None:
                # a cancel (request_cancel) or a control request (request_processes,
                # set_queue_paused): the worker looks at once
                cancel = cancel or notice.extra in (b"cancel", b"control")
        except psycopg.Error:
            # The server went away; listen again when it is back (poll meanwhile).
            self._stop_listening()
            with contextlib.suppress(BackendUnavailable):
                self._listen()
        return cancel

    # -- reading --------------------------------------------------------------------

    def get_job(self, job_id: int) -> Job | None:
        with self._connection() as conn:
            return reads.get_job(conn, self._q, job_id)

    def _must_get(self, job_id: int) -> Job:
        job = self.get_job(job_id)
        assert job is not None, f"job {job_id} vanished"
        return job

    def list_jobs(self, job_filter: JobFilter) -> list[Job]:
        with self._connection() as conn:
            return reads.list_jobs(conn, self._q, job_filter)

    def list_events(self, job_id: int) -> list[Event]:
        return [rows.event(row) for row in self._fetch("list_events", {"job_id": job_id})]

    def after_results(self, job_id: int) -> list[tuple[int, str | None, Any]]:
        return [tuple(row) for row in self._fetch("after_results", {"job_id": job_id})]

    def list_workers(
        self, *, include_stopped: bool = False, limit: int | None = 100
    ) -> list[WorkerRecord]:
        found = self._fetch("list_workers", {"include_stopped": include_stopped, "limit": limit})
        return [rows.worker(row) for row in found]

    # -- controlling workers and queues ---------------------------------------------

    def worker_control(self, worker_id: int) -> WorkerControl:
        found = self._fetch("worker_control", {"worker_id": worker_id})
        if not found:
            return WorkerControl(None, frozenset())
        requested, paused = found[0]
        return WorkerControl(requested, frozenset(paused or ()))

    def update_worker_processes(
        self, worker_id: int, *, processes: int, reserve: int, now: datetime
    ) -> None:
        self._fetch(
            "update_worker_processes",
            {"worker_id": worker_id, "processes": processes, "reserve": reserve},
        )

    def request_processes(self, name: str, processes: int, *, now: datetime) -> int:
        return len(self._fetch("request_processes", {"name": name, "processes": processes}))

    def queued_queues(self) -> list[str]:
        return [row[0] for row in self._fetch("queued_queues", {})]

    def has_backlog(self, queues: Sequence[str], *, now: datetime) -> bool:
        params = {"now": now, "any_queue": not queues, "queues": list(queues)}
        return bool(self._fetch("has_backlog", params)[0][0])

    def set_queue_paused(self, name: str, paused: bool, *, by: str, now: datetime) -> None:
        self._fetch("set_queue_paused", {"name": name, "paused": paused, "by": by, "now": now})

    def list_queues(self) -> list[QueueState]:
        return [rows.queue(row) for row in self._fetch("list_queues", {})]

    def task_stats(self, *, since: datetime, now: datetime) -> list[TaskStats]:
        with self._connection() as conn:
            return reads.task_stats(conn, self._q, since, now)

    def ended_counts(
        self, *, since: datetime, now: datetime, bucket_seconds: float
    ) -> list[tuple[int, str, str, int]]:
        params = {"since": since, "now": now, "bucket": bucket_seconds}
        found = self._fetch("ended_counts", params)
        return sorted((int(slot), task, status, int(n)) for slot, task, status, n in found)

    def prune(self, *, older_than: dict[str, timedelta], now: datetime) -> PruneReport:
        with self._connection() as conn:
            return reads.prune(conn, self._q, older_than, now)

    # -- schedules --------------------------------------------------------------------

    def save_schedule(
        self, definition: ScheduleDef, *, now: datetime, replace: bool = False
    ) -> ScheduleRecord:
        with self._connection() as conn, conn.transaction():
            return schedules.save(conn, self._q, definition, now, replace)

    def get_schedule(self, name: str) -> ScheduleRecord | None:
        with self._connection() as conn:
            return schedules.get(conn, self._q, name)

    def list_schedules(self) -> list[ScheduleRecord]:
        with self._connection() as conn:
            return schedules.list_all(conn, self._q)

    def set_schedule_paused(self, name: str, paused: bool, *, now: datetime) -> ScheduleRecord:
        with self._connection() as conn, conn.transaction():
            return schedules.set_paused(conn, self._q, name, paused, now)

    def remove_schedule(self, name: str) -> bool:
        return bool(self._fetch("delete_schedule", {"name": name}))

    def fire_due_schedules(
        self,
        *,
        now: datetime,
        worker_id: int | None,
        make_job: Callable[[ScheduleRecord, datetime], NewJob | None],
    ) -> list[Tick]:
        if not self._fetch("any_due_schedule", {"now": now})[0][0]:
            return []
        with self._connection() as conn, conn.transaction():
            store = schedules.PostgresTickStore(conn, self._q, self._enqueue_one)
            return fire_due(store, now, worker_id, make_job)

    def list_ticks(self, name: str, *, limit: int | None = 100) -> list[Tick]:
        found = self._fetch("list_ticks", {"schedule": name, "limit": limit})
        return [rows.tick(row) for row in found]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
