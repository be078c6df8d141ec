"""The embedded backend: one SQLite file on one host, no server.

WAL mode lets readers run beside the single writer; every write takes the lock up front
with ``BEGIN IMMEDIATE``, so two workers never claim the same job and a transaction never
has to be retried half-way. The SQL is in ``tasktrail/sql/sqlite/``.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

from ..config import SqliteDsn
from ..errors import BackendUnavailable, InvalidArguments, SchemaError
from ..job import Event, Job, NewJob, Outcome, Ref, WorkerInfo, WorkerRecord
from ..stats import build_task_stats
from ._sql import queries, read_sql
from ._wake import WakeListener, notify_all, wake_directory
from .base import Backend, JobFilter, PruneReport, RecoveredJob, TaskStats
from .common import lost_error, outcome_events, raise_transition_error, transition

__all__ = ["SCHEMA_VERSION", "SqliteBackend"]

SCHEMA_VERSION = 1
_Q = queries("sqlite")


def _ts(value: datetime) -> str:
    """A datetime as stored: UTC ISO 8601 with microseconds (sorts in time order)."""
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text is not None else None


def _job(row: Sequence[Any]) -> Job:
    return Job(
        id=row[0],
        task=row[1],
        queue=row[2],
        status=row[3],
        ref=Ref(row[4], row[5]) if row[4] is not None else None,
        priority=row[6],
        args=json.loads(row[7]),
        kwargs=json.loads(row[8]),
        attempts=row[9],
        max_attempts=row[10],
        timeout=row[11],
        run_at=datetime.fromisoformat(row[12]),
        created_at=datetime.fromisoformat(row[13]),
        started_at=_dt(row[14]),
        finished_at=_dt(row[15]),
        worker_id=row[16],
        worker_name=row[17],
        result=json.loads(row[18]) if row[18] is not None else None,
        error=row[19],
    )


def _event_row(
    job_id: int,
    at: datetime,
    kind: str,
    attempt: int,
    worker_id: int | None,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "at": _ts(at),
        "kind": kind,
        "attempt": attempt,
        "worker_id": worker_id,
        "detail": json.dumps(detail, separators=(",", ":")) if detail else None,
    }


class SqliteBackend(Backend):
    """Jobs in a SQLite file. See the module docstring."""

    kind = "sqlite"

    def __init__(self, dsn: SqliteDsn, *, busy_timeout: float = 30.0) -> None:
        super().__init__()
        self.dsn = dsn
        self.path = dsn.path
        self.url = dsn.url
        self._busy_timeout = busy_timeout
        self._conn = self._connect()
        self._wake_dir = wake_directory(self.path)
        self._listener: WakeListener | None = None

    # -- connection -----------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        parent = self.path.parent
        if not parent.is_dir():
            raise BackendUnavailable(
                f"cannot open SQLite database {self.path}: directory {parent} does not exist"
            )
        if not os.access(parent, os.W_OK) or (
            self.path.exists() and not os.access(self.path, os.R_OK | os.W_OK)
        ):
            raise BackendUnavailable(
                f"cannot open SQLite database {self.path}: no permission to write there"
            )
        try:
            conn = sqlite3.connect(
                str(self.path),
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            # The value comes from a fixed set checked by config.parse_dsn; PRAGMA
            # arguments cannot be bound as parameters.
            conn.execute(f"PRAGMA synchronous={self.dsn.synchronous.upper()}")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as exc:
            raise BackendUnavailable(f"cannot open SQLite database {self.path}: {exc}") from exc
        if mode.lower() != "wal":
            conn.close()
            raise BackendUnavailable(
                f"SQLite database {self.path} cannot use WAL mode (got {mode!r}); "
                "is it on a network file system?"
            )
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the write lock from its first statement."""
        self._check_process()
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise BackendUnavailable(f"SQLite database {self.path} is not writable: {exc}") from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise BackendUnavailable(f"SQLite database {self.path}: {exc}") from exc
            raise

    def _read(self, sql: str, params: dict[str, Any] | Sequence[Any] = ()) -> list[Any]:
        self._check_process()
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            raise BackendUnavailable(f"SQLite database {self.path}: {exc}") from exc

    def setup(self) -> None:
        version = self._schema_version()
        if version is None or version < SCHEMA_VERSION:
            self.migrate()
            version = self._schema_version()
        if version is not None and version > SCHEMA_VERSION:
            raise SchemaError(
                f"SQLite database {self.path} has tasktrail schema version {version}, newer "
                f"than this tasktrail knows ({SCHEMA_VERSION}); upgrade tasktrail"
            )

    def migrate(self) -> list[int]:
        before = self._schema_version()
        if before is not None and before >= SCHEMA_VERSION:
            return []
        self._check_process()
        try:
            # schema.sql is idempotent; BEGIN IMMEDIATE serialises concurrent creators.
            self._conn.executescript(
                "BEGIN IMMEDIATE;\n" + read_sql("sqlite", "schema.sql") + "\nCOMMIT;"
            )
        except sqlite3.DatabaseError as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise BackendUnavailable(
                f"cannot create the tasktrail schema in {self.path}: {exc}"
            ) from exc
        return [SCHEMA_VERSION]

    def _schema_version(self) -> int | None:
        try:
            row = self._conn.execute("SELECT max(version) FROM migrations").fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            raise BackendUnavailable(f"SQLite database {self.path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise BackendUnavailable(f"cannot read SQLite database {self.path}: {exc}") from exc
        return int(row[0]) if row[0] is not None else None

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if os.getpid() == self.owner_pid:
            self._conn.close()

    # -- producers ----------------------------------------------------------------

    def enqueue(
        self, jobs: Sequence[NewJob], *, now: datetime, connection: Any = None
    ) -> list[int]:
        if not jobs:
            return []
        if connection is not None:
            return self._enqueue_in(self._caller_connection(connection), jobs, now)
        with self._write() as conn:
            ids = self._enqueue_in(conn, jobs, now)
        notify_all(self._wake_dir)
        return ids

    def _caller_connection(self, connection: Any) -> sqlite3.Connection:
        if not isinstance(connection, sqlite3.Connection):
            raise InvalidArguments(
                "connection= for the SQLite backend must be a sqlite3.Connection, "
                f"got {type(connection).__name__}"
            )
        files = {row[2] for row in connection.execute("PRAGMA database_list") if row[1] == "main"}
        if str(self.path) not in files:
            raise InvalidArguments(
                f"connection= is open on {', '.join(files) or 'an in-memory database'}, "
                f"not on the tasktrail database {self.path}"
            )
        return connection

    @staticmethod
    def _enqueue_in(conn: sqlite3.Connection, jobs: Sequence[NewJob], now: datetime) -> list[int]:
        now_text = _ts(now)
        ids: list[int] = []
        insert = _Q["insert_job"]
        for job in jobs:
            row = conn.execute(
                insert,
                {
                    "task": job.task,
                    "queue": job.queue,
                    "ref_type": job.ref.type if job.ref else None,
                    "ref_id": job.ref.id if job.ref else None,
                    "priority": job.priority,
                    "args": job.args_json,
                    "kwargs": job.kwargs_json,
                    "max_attempts": job.max_attempts,
                    "timeout": job.timeout,
                    "run_at": _ts(job.run_at) if job.run_at is not None else now_text,
                    "now": now_text,
                },
            ).fetchone()
            ids.append(row[0])
        conn.executemany(
            _Q["insert_event"], [_event_row(job_id, now, "enqueued", 0, None) for job_id in ids]
        )
        return ids

    def cancel(self, job_id: int, *, now: datetime, by: str, reason: str | None = None) -> Job:
        with self._write() as conn:
            row = conn.execute(_Q["cancel_queued"], {"job_id": job_id, "now": _ts(now)}).fetchone()
            if row is None:
                status = conn.execute(_Q["job_status"], {"job_id": job_id}).fetchone()
                raise_transition_error(job_id, status[0] if status else None, "cancelled")
            detail = {"by": by, **({"reason": reason} if reason else {})}
            conn.execute(
                _Q["insert_event"], _event_row(job_id, now, "cancelled", row[0], None, detail)
            )
        return self._must_get(job_id)

    def retry(self, job_id: int, *, now: datetime, by: str) -> Job:
        with self._write() as conn:
            row = conn.execute(_Q["retry_job"], {"job_id": job_id, "now": _ts(now)}).fetchone()
            if row is None:
                status = conn.execute(_Q["job_status"], {"job_id": job_id}).fetchone()
                raise_transition_error(job_id, status[0] if status else None, "retried")
            conn.execute(
                _Q["insert_event"], _event_row(job_id, now, "retried", row[0], None, {"by": by})
            )
        notify_all(self._wake_dir)
        return self._must_get(job_id)

    # -- workers --------------------------------------------------------------------

    def register_worker(self, info: WorkerInfo, *, now: datetime) -> int:
        with self._write() as conn:
            row = conn.execute(
                _Q["register_worker"],
                {
                    "name": info.name,
                    "host": info.host,
                    "pid": info.pid,
                    "processes": info.processes,
                    "reserve": info.reserve,
                    "queues": json.dumps(list(info.queues)),
                    "lease_seconds": info.lease_seconds,
                    "now": _ts(now),
                    "expires_at": _ts(now + timedelta(seconds=info.lease_seconds)),
                },
            ).fetchone()
        worker_id = int(row[0])
        if self._listener is not None:
            self._listener.close()
        self._listener = WakeListener(self._wake_dir, f"worker-{worker_id}")
        return worker_id

    def heartbeat(self, worker_id: int, *, now: datetime) -> bool:
        with self._write() as conn:
            lease = conn.execute(_Q["worker_lease"], {"worker_id": worker_id}).fetchone()
            if lease is None:
                return False
            conn.execute(
                _Q["heartbeat"],
                {
                    "worker_id": worker_id,
                    "now": _ts(now),
                    "expires_at": _ts(now + timedelta(seconds=lease[0])),
                },
            )
        return True

    def unregister_worker(self, worker_id: int, *, now: datetime) -> None:
        with self._write() as conn:
            conn.execute(_Q["unregister_worker"], {"worker_id": worker_id, "now": _ts(now)})
            recovered = self._take_back(conn, worker_id, now)
        if recovered:
            notify_all(self._wake_dir)
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def reserve(
        self, worker_id: int, queues: Sequence[str], limit: int, *, now: datetime
    ) -> list[Job]:
        if limit <= 0:
            return []
        now_text = _ts(now)
        # A cheap read first: an idle worker polling an empty queue takes no write lock.
        if not self._candidates(self._conn, queues, 1, now_text):
            return []
        with self._write() as conn:
            if conn.execute(_Q["worker_lease"], {"worker_id": worker_id}).fetchone() is None:
                return []
            ids = self._candidates(conn, queues, limit, now_text)
            if not ids:
                return []
            rows = conn.execute(
                _Q["claim"], {"ids": json.dumps(ids), "worker_id": worker_id}
            ).fetchall()
            jobs = {row[0]: _job(row) for row in rows}
            claimed = [jobs[job_id] for job_id in ids if job_id in jobs]
            conn.executemany(
                _Q["insert_event"],
                [_event_row(job.id, now, "reserved", job.attempts, worker_id) for job in claimed],
            )
        return claimed

    @staticmethod
    def _candidates(
        conn: sqlite3.Connection, queues: Sequence[str], limit: int, now_text: str
    ) -> list[int]:
        """Ids to claim, best first: priority, then run_at, then id, across the queues."""
        if not queues:
            rows = conn.execute(
                _Q["claim_candidates"], {"now": now_text, "limit": limit}
            ).fetchall()
        else:
            rows = []
            for queue in queues:
                rows.extend(
                    conn.execute(
                        _Q["claim_candidates_in_queue"],
                        {"queue": queue, "now": now_text, "limit": limit},
                    ).fetchall()
                )
            if len(queues) > 1:
                rows.sort(key=lambda row: (-row[1], row[2], row[0]))
        return [row[0] for row in rows[:limit]]

    def mark_started(self, worker_id: int, job_ids: Sequence[int], *, now: datetime) -> list[Job]:
        if not job_ids:
            return []
        with self._write() as conn:
            rows = conn.execute(
                _Q["start"],
                {"ids": json.dumps(list(job_ids)), "worker_id": worker_id, "now": _ts(now)},
            ).fetchall()
            started = [_job(row) for row in rows]
            conn.executemany(
                _Q["insert_event"],
                [_event_row(job.id, now, "started", job.attempts, worker_id) for job in started],
            )
        return started

    def finish(self, worker_id: int, outcomes: Sequence[Outcome], *, now: datetime) -> list[int]:
        if not outcomes:
            return []
        rejected: list[int] = []
        events: list[dict[str, Any]] = []
        with self._write() as conn:
            for outcome in outcomes:
                change = transition(outcome)
                params = {
                    "job_id": outcome.job_id,
                    "worker_id": worker_id,
                    "attempt": outcome.attempt,
                    "status": change.status,
                    "finished_at": _ts(outcome.finished_at),
                    "result": outcome.result_json,
                    "error": outcome.error,
                    "run_at": _ts(change.run_at) if change.run_at is not None else None,
                    "extra_attempts": change.extra_attempts,
                }
                applied = conn.execute(_Q["finish"], params).rowcount == 1
                if not applied:
                    if not conn.execute(_Q["job_exists"], params).fetchone():
                        continue  # no such job: nothing to record it against
                    rejected.append(outcome.job_id)
                events.extend(
                    _event_row(outcome.job_id, at, kind, outcome.attempt, worker_id, detail)
                    for at, kind, detail in outcome_events(outcome, applied, worker_id, now)
                )
            conn.executemany(_Q["insert_event"], events)
        return rejected

    def release(
        self, worker_id: int, job_ids: Sequence[int], *, now: datetime, reason: str
    ) -> None:
        if not job_ids:
            return
        with self._write() as conn:
            rows = conn.execute(
                _Q["release"], {"ids": json.dumps(list(job_ids)), "worker_id": worker_id}
            ).fetchall()
            conn.executemany(
                _Q["insert_event"],
                [
                    _event_row(job_id, now, "released", attempts, worker_id, {"reason": reason})
                    for job_id, attempts in rows
                ],
            )
        notify_all(self._wake_dir)

    def recover_lost(self, *, now: datetime) -> list[RecoveredJob]:
        now_text = _ts(now)
        if not self._read(_Q["expired_workers"], {"now": now_text}):
            return []
        recovered: list[RecoveredJob] = []
        with self._write() as conn:
            for (worker_id,) in conn.execute(_Q["expired_workers"], {"now": now_text}).fetchall():
                conn.execute(_Q["mark_worker_lost"], {"worker_id": worker_id, "now": now_text})
                recovered.extend(self._take_back(conn, worker_id, now))
        if recovered:
            notify_all(self._wake_dir)
        return recovered

    @staticmethod
    def _take_back(conn: sqlite3.Connection, worker_id: int, now: datetime) -> list[RecoveredJob]:
        """Recover every job ``worker_id`` holds: reserved ones requeued, running ones lost."""
        now_text = _ts(now)
        params = {"worker_id": worker_id, "now": now_text, "error": lost_error(worker_id)}
        recovered: list[RecoveredJob] = []
        events: list[dict[str, Any]] = []
        for name, was, became in (
            ("recover_reserved", "reserved", "queued"),
            ("recover_running_retry", "running", "queued"),
            ("recover_running_fail", "running", "failed"),
        ):
            for job_id, attempts in conn.execute(_Q[name], params).fetchall():
                recovered.append(RecoveredJob(job_id, worker_id, was, became))
                detail = {"was": was, "error": lost_error(worker_id)}
                events.append(_event_row(job_id, now, "lost", attempts, worker_id, detail))
                if was == "running" and became == "queued":
                    events.append(
                        _event_row(
                            job_id, now, "retry_scheduled", attempts, None, {"run_at": now_text}
                        )
                    )
        conn.executemany(_Q["insert_event"], events)
        return recovered

    def wakeup_fileno(self) -> int | None:
        return self._listener.fileno() if self._listener is not None else None

    def consume_wakeups(self) -> None:
        if self._listener is not None:
            self._listener.drain()

    # -- reading --------------------------------------------------------------------

    def get_job(self, job_id: int) -> Job | None:
        rows = self._read(_Q["select_jobs"] + " WHERE j.id = :id", {"id": job_id})
        return _job(rows[0]) if rows else None

    def _must_get(self, job_id: int) -> Job:
        job = self.get_job(job_id)
        assert job is not None, f"job {job_id} vanished inside its own transaction"
        return job

    def list_jobs(self, job_filter: JobFilter) -> list[Job]:
        conditions: list[str] = []
        params: dict[str, Any] = {}
        f = job_filter
        if f.ids is not None:
            conditions.append("j.id IN (SELECT value FROM json_each(:ids))")
            params["ids"] = json.dumps(list(f.ids))
        for column, value in (
            ("ref_type", f.ref_type),
            ("ref_id", f.ref_id),
            ("task", f.task),
            ("queue", f.queue),
            ("worker_id", f.worker_id),
        ):
            if value is not None:
                conditions.append(f"j.{column} = :{column}")
                params[column] = value
        if f.statuses is not None:
            conditions.append("j.status IN (SELECT value FROM json_each(:statuses))")
            params["statuses"] = json.dumps(list(f.statuses))
        if f.since is not None:
            conditions.append("j.created_at >= :since")
            params["since"] = _ts(f.since)
        if f.until is not None:
            conditions.append("j.created_at < :until")
            params["until"] = _ts(f.until)
        where = (" WHERE " + " AND ".join(conditions)) if conditions else ""
        params["limit"] = -1 if f.limit is None else f.limit
        sql = _Q["select_jobs"] + where + " ORDER BY j.id DESC LIMIT :limit"
        return [_job(row) for row in self._read(sql, params)]

    def list_events(self, job_id: int) -> list[Event]:
        return [
            Event(
                id=row[0],
                job_id=row[1],
                at=datetime.fromisoformat(row[2]),
                kind=row[3],
                attempt=row[4],
                worker_id=row[5],
                worker_name=row[6],
                host=row[7],
                pid=row[8],
                detail=json.loads(row[9]) if row[9] else {},
            )
            for row in self._read(_Q["list_events"], {"job_id": job_id})
        ]

    def list_workers(
        self, *, include_stopped: bool = False, limit: int | None = 100
    ) -> list[WorkerRecord]:
        rows = self._read(
            _Q["list_workers"],
            {"include_stopped": include_stopped, "limit": -1 if limit is None else limit},
        )
        return [
            WorkerRecord(
                id=row[0],
                name=row[1],
                host=row[2],
                pid=row[3],
                processes=row[4],
                reserve=row[5],
                queues=tuple(json.loads(row[6])),
                status=row[7],
                started_at=datetime.fromisoformat(row[8]),
                heartbeat_at=datetime.fromisoformat(row[9]),
                expires_at=datetime.fromisoformat(row[10]),
                stopped_at=_dt(row[11]),
            )
            for row in rows
        ]

    def task_stats(self, *, since: datetime, now: datetime) -> list[TaskStats]:
        active = self._read(_Q["stats_active"])
        finished = self._read(_Q["stats_finished"], {"since": _ts(since), "now": _ts(now)})
        return build_task_stats(active, finished, (now - since).total_seconds())

    def prune(self, *, older_than: dict[str, timedelta], now: datetime) -> PruneReport:
        jobs: dict[str, int] = {}
        events = 0
        with self._write() as conn:
            for status, keep in sorted(older_than.items()):
                params = {"status": status, "cutoff": _ts(now - keep)}
                events += conn.execute(_Q["prune_events"], params).rowcount
                jobs[status] = conn.execute(_Q["prune_jobs"], params).rowcount
        return PruneReport(jobs=jobs, events=events)
