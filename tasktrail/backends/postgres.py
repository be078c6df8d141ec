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
import dataclasses
import json
import os
import re
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import tuple_row

from ..config import PostgresDsn, redact_dsn
from ..errors import BackendUnavailable, InvalidArguments, InvalidPayload, SchemaError
from ..job import Event, Job, NewJob, Outcome, Ref, WorkerInfo, WorkerRecord
from ..stats import build_task_stats
from ._sql import queries, read_sql
from .base import Backend, JobFilter, PruneReport, RecoveredJob, TaskStats
from .common import LOST_ERROR_TEMPLATE, outcome_events, raise_transition_error, transition

__all__ = ["SCHEMA_VERSION", "PostgresBackend", "migrations", "render_schema"]

SCHEMA_VERSION = 1
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_NUL_ESCAPE_AFTER = re.compile(r"((?<!\\)(?:\\\\)*)\\u0000")


def _render(text: str, schema: str) -> str:
    """Put the configured (validated) schema name where the SQL files say ``tasktrail``."""
    if schema == "tasktrail":
        return text
    text = text.replace("'tasktrail'", f"'{schema}'")
    return re.sub(r"\btasktrail\b", f'"{schema}"', text)


def render_schema(schema: str) -> str:
    """The complete setup script for ``schema``."""
    return _render(read_sql("postgres", "schema.sql"), schema)


def migrations() -> list[tuple[int, str]]:
    """``(version, file name)`` of every migration shipped, in order."""
    from importlib import resources

    folder = (
        resources.files("tasktrail").joinpath("sql").joinpath("postgres").joinpath("migrations")
    )
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name))
    return sorted(found)


@cache
def _queries(schema: str) -> dict[str, str]:
    return {name: _render(text, schema) for name, text in queries("postgres").items()}


def _job(row: Sequence[Any]) -> Job:
    return Job(
        id=row[0],
        task=row[1],
        queue=row[2],
        status=row[3],
        ref=Ref(row[4], row[5]) if row[4] is not None else None,
        priority=row[6],
        args=row[7],
        kwargs=row[8],
        attempts=row[9],
        max_attempts=row[10],
        timeout=row[11],
        run_at=row[12],
        created_at=row[13],
        started_at=row[14],
        finished_at=row[15],
        worker_id=row[16],
        worker_name=row[17],
        result=row[18],
        error=row[19],
    )


def _check_no_nul(job: NewJob) -> None:
    for what, text in (("arguments", job.args_json), ("keyword arguments", job.kwargs_json)):
        if "\\u0000" in text and _NUL_ESCAPE.search(text):
            raise InvalidPayload(
                f"{what} of {job.task} contain a NUL character (\\u0000), which PostgreSQL "
                "cannot store in JSON"
            )


def _text_without_nul(text: str | None) -> str | None:
    """Text PostgreSQL can store: a NUL character (which no text value can hold)
    becomes U+FFFD. For errors, tracebacks and reasons, which are read, not parsed."""
    return text.replace("\x00", "\ufffd") if text and "\x00" in text else text


def _json_without_nul(text: str) -> str:
    """JSON text jsonb accepts: each ``\\u0000`` escape becomes ``\\ufffd``."""
    if "\\u0000" not in text:
        return text
    return _NUL_ESCAPE_AFTER.sub(lambda match: match.group(1) + "\\ufffd", text)


def _storable(outcome: Outcome) -> Outcome:
    """``outcome`` in a form PostgreSQL can store.

    A result holding a NUL character cannot be stored as jsonb: the attempt fails (for
    good: the retry policy is not known here) with an error saying so, instead of the
    whole batch of outcomes failing to record.
    """
    result = outcome.result_json
    if outcome.kind == "succeeded" and result and _NUL_ESCAPE.search(result):
        return dataclasses.replace(
            outcome,
            kind="failed",
            result_json=None,
            error="the result contains a NUL character (\\u0000), which PostgreSQL cannot "
            "store in JSON",
            retry_at=None,
            detail={**outcome.detail, "reason": "bad_result"},
        )
    return outcome


class PostgresBackend(Backend):
    """Jobs in a PostgreSQL schema. See the module docstring."""

    kind = "postgresql"

    def __init__(self, dsn: PostgresDsn, *, connect_timeout: float = 10.0) -> None:
        super().__init__()
        self.dsn = dsn
        self.schema = dsn.schema
        self.url = f"{redact_dsn(dsn.conninfo)} (schema {dsn.schema})"
        self._connect_timeout = connect_timeout
        self._q = _queries(dsn.schema)
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
        except psycopg.OperationalError as exc:
            if self._conn is not None and (self._conn.broken or self._conn.closed):
                raise BackendUnavailable(
                    f"lost the connection to PostgreSQL at {self.url}: {_first_line(exc)}"
                ) from exc
            raise BackendUnavailable(f"PostgreSQL at {self.url}: {_first_line(exc)}") from exc
        except psycopg.errors.UndefinedTable as exc:
            raise SchemaError(
                f"the tasktrail schema {self.schema!r} is missing or incomplete in "
                f"{self.url}: run `tasktrail migrate` ({_first_line(exc)})"
            ) from exc

    def _fetch(self, name: str, params: dict[str, Any]) -> list[Any]:
        with self._connection() as conn:
            return conn.execute(self._q[name], params).fetchall()

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
        with self._connection() as conn:
            exists = conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL", (f'"{self.schema}".migrations',)
            ).fetchone()
            if not exists or not exists[0]:
                return None
            row = conn.execute(self._q["schema_version"]).fetchone()
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
            conn.execute(
                pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pgsql.Identifier(self.schema))
            )
            conn.execute(
                _render(
                    "CREATE TABLE IF NOT EXISTS tasktrail.migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())",
                    self.schema,
                ).encode()
            )
            done = {
                row[0]
                for row in conn.execute(
                    _render("SELECT version FROM tasktrail.migrations", self.schema).encode()
                )
            }
            for version, filename in migrations():
                if version in done:
                    continue
                script = _render(read_sql("postgres", f"migrations/{filename}"), self.schema)
                conn.execute(script.encode())
                conn.execute(
                    _render(
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
            except psycopg.errors.InsufficientPrivilege as exc:
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
    ) -> list[int]:
        if not jobs:
            return []
        for job in jobs:
            _check_no_nul(job)
        params = {
            "now": now,
            "task": [job.task for job in jobs],
            "queue": [job.queue for job in jobs],
            "ref_type": [job.ref.type if job.ref else None for job in jobs],
            "ref_id": [job.ref.id if job.ref else None for job in jobs],
            "priority": [job.priority for job in jobs],
            "args": [job.args_json for job in jobs],
            "kwargs": [job.kwargs_json for job in jobs],
            "max_attempts": [job.max_attempts for job in jobs],
            "timeout": [job.timeout for job in jobs],
            "run_at": [job.run_at for job in jobs],
        }
        if connection is not None:
            if not isinstance(connection, psycopg.Connection):
                raise InvalidArguments(
                    "connection= for the PostgreSQL backend must be a psycopg (3) Connection, "
                    f"got {type(connection).__name__}"
                )
            # The caller's connection may have any row factory (dict_row is common).
            with connection.cursor(row_factory=tuple_row) as cursor:
                rows = cursor.execute(self._q["enqueue"], params).fetchall()
        else:
            rows = self._fetch("enqueue", params)
        return [row[0] for row in rows]

    def cancel(self, job_id: int, *, now: datetime, by: str, reason: str | None = None) -> Job:
        detail = {"by": by, **({"reason": reason} if reason else {})}
        rows = self._fetch(
            "cancel_queued",
            {"job_id": job_id, "now": now, "detail": _json_without_nul(json.dumps(detail))},
        )
        if not rows:
            status = self._fetch("job_status", {"job_id": job_id})
            raise_transition_error(job_id, status[0][0] if status else None, "cancelled")
        return self._must_get(job_id)

    def retry(self, job_id: int, *, now: datetime, by: str) -> Job:
        rows = self._fetch(
            "retry_job",
            {"job_id": job_id, "now": now, "detail": _json_without_nul(json.dumps({"by": by}))},
        )
        if not rows:
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

    def reserve(
        self, worker_id: int, queues: Sequence[str], limit: int, *, now: datetime
    ) -> list[Job]:
        if limit <= 0:
            return []
        params: dict[str, Any] = {"worker_id": worker_id, "limit": limit, "now": now}
        if queues:
            params["queues"] = list(queues)
            rows = self._fetch("claim_in_queues", params)
        else:
            rows = self._fetch("claim_any_queue", params)
        return [_job(row) for row in rows]

    def mark_started(self, worker_id: int, job_ids: Sequence[int], *, now: datetime) -> list[Job]:
        if not job_ids:
            return []
        rows = self._fetch("start", {"ids": list(job_ids), "worker_id": worker_id, "now": now})
        order = {job_id: index for index, job_id in enumerate(job_ids)}
        return sorted((_job(row) for row in rows), key=lambda job: order[job.id])

    def finish(self, worker_id: int, outcomes: Sequence[Outcome], *, now: datetime) -> list[int]:
        if not outcomes:
            return []
        params: dict[str, Any] = {
            "worker_id": worker_id,
            "job_id": [],
            "attempt": [],
            "status": [],
            "finished_at": [],
            "result": [],
            "error": [],
            "run_at": [],
            "extra_attempts": [],
            "event_job_id": [],
            "event_at": [],
            "event_kind": [],
            "event_attempt": [],
            "event_detail": [],
            "event_if_applied": [],
        }
        for outcome in map(_storable, outcomes):
            change = transition(outcome)
            params["job_id"].append(outcome.job_id)
            params["attempt"].append(outcome.attempt)
            params["status"].append(change.status)
            params["extra_attempts"].append(change.extra_attempts)
            params["finished_at"].append(outcome.finished_at)
            params["result"].append(outcome.result_json)
            params["error"].append(_text_without_nul(outcome.error))
            params["run_at"].append(change.run_at)
            for applied in (True, False):
                for at, kind, detail in outcome_events(outcome, applied, worker_id, now):
                    params["event_job_id"].append(outcome.job_id)
                    params["event_at"].append(at)
                    params["event_kind"].append(kind)
                    params["event_attempt"].append(outcome.attempt)
                    params["event_detail"].append(
                        _json_without_nul(json.dumps(detail)) if detail else None
                    )
                    params["event_if_applied"].append(applied)
        return [row[0] for row in self._fetch("finish", params)]

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

    def consume_wakeups(self) -> None:
        listener = self._listener
        if listener is None:
            return
        try:
            listener.pgconn.consume_input()
            while listener.pgconn.notifies() is not None:
                pass
        except psycopg.Error:
            # The server went away; listen again when it is back (poll meanwhile).
            self._stop_listening()
            with contextlib.suppress(BackendUnavailable):
                self._listen()

    # -- reading --------------------------------------------------------------------

    def get_job(self, job_id: int) -> Job | None:
        with self._connection() as conn:
            row = conn.execute(
                (self._q["select_jobs"] + " WHERE j.id = %(id)s").encode(), {"id": job_id}
            ).fetchone()
        return _job(row) if row else None

    def _must_get(self, job_id: int) -> Job:
        job = self.get_job(job_id)
        assert job is not None, f"job {job_id} vanished"
        return job

    def list_jobs(self, job_filter: JobFilter) -> list[Job]:
        f = job_filter
        conditions: list[str] = []
        params: dict[str, Any] = {}
        if f.ids is not None:
            conditions.append("j.id = ANY (%(ids)s::bigint[])")
            params["ids"] = list(f.ids)
        for column, value in (
            ("ref_type", f.ref_type),
            ("ref_id", f.ref_id),
            ("task", f.task),
            ("queue", f.queue),
            ("worker_id", f.worker_id),
        ):
            if value is not None:
                conditions.append(f"j.{column} = %({column})s")
                params[column] = value
        if f.statuses is not None:
            conditions.append("j.status = ANY (%(statuses)s::text[])")
            params["statuses"] = list(f.statuses)
        if f.since is not None:
            conditions.append("j.created_at >= %(since)s")
            params["since"] = f.since
        if f.until is not None:
            conditions.append("j.created_at < %(until)s")
            params["until"] = f.until
        where = (" WHERE " + " AND ".join(conditions)) if conditions else ""
        params["limit"] = f.limit
        query = self._q["select_jobs"] + where + " ORDER BY j.id DESC LIMIT %(limit)s"
        with self._connection() as conn:
            rows = conn.execute(query.encode(), params).fetchall()
        return [_job(row) for row in rows]

    def list_events(self, job_id: int) -> list[Event]:
        return [
            Event(
                id=row[0],
                job_id=row[1],
                at=row[2],
                kind=row[3],
                attempt=row[4],
                worker_id=row[5],
                worker_name=row[6],
                host=row[7],
                pid=row[8],
                detail=row[9] or {},
            )
            for row in self._fetch("list_events", {"job_id": job_id})
        ]

    def list_workers(
        self, *, include_stopped: bool = False, limit: int | None = 100
    ) -> list[WorkerRecord]:
        rows = self._fetch("list_workers", {"include_stopped": include_stopped, "limit": limit})
        return [
            WorkerRecord(
                id=row[0],
                name=row[1],
                host=row[2],
                pid=row[3],
                processes=row[4],
                reserve=row[5],
                queues=tuple(row[6]),
                status=row[7],
                started_at=row[8],
                heartbeat_at=row[9],
                expires_at=row[10],
                stopped_at=row[11],
            )
            for row in rows
        ]

    def task_stats(self, *, since: datetime, now: datetime) -> list[TaskStats]:
        active = self._fetch("stats_active", {})
        finished = self._fetch("stats_finished", {"since": since, "now": now})
        return build_task_stats(active, finished, (now - since).total_seconds())

    def prune(self, *, older_than: dict[str, timedelta], now: datetime) -> PruneReport:
        jobs: dict[str, int] = {}
        events = 0
        for status, keep in sorted(older_than.items()):
            jobs[status] = 0
            while True:
                deleted_jobs, deleted_events = self._fetch(
                    "prune_batch",
                    {"status": status, "cutoff": now - keep, "batch": 5000},
                )[0]
                jobs[status] += deleted_jobs
                events += deleted_events
                if deleted_jobs < 5000:
                    break
        return PruneReport(jobs=jobs, events=events)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
