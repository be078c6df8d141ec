"""The embedded backend: one SQLite file on one host, no server.

WAL mode lets readers run beside the single writer; every write takes the lock up front
with ``BEGIN IMMEDIATE``, so two workers never claim the same job and a transaction never
has to be retried half-way. The SQL is in ``tasktrail/sql/sqlite/``.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

from ...config import SqliteDsn
from ...errors import BackendUnavailable, InvalidArguments, InvalidTransition, SchemaError
from ...job import (
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
from .._sql import queries, read_sql
from .._wake import CANCEL, JOBS, WakeListener, notify_all, wake_directory
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
from ..common import raise_transition_error, requeues_now
from ..records import FROM_TEXT, held
from ..ticks import fire_due
from . import jobs as job_sql
from . import reads, rows, schedules

__all__ = ["SCHEMA_VERSION", "SqliteBackend"]

SCHEMA_VERSION = 11
_Q = queries("sqlite")
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def _migrations() -> list[tuple[int, str, str]]:
    """``(version, name, file)`` of the SQLite migrations shipped, in order."""
    folder = resources.files("tasktrail").joinpath("sql").joinpath("sqlite").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.name))
    return sorted(found)


def _statements(script: str) -> Iterator[str]:
    """The statements of a script, split where SQLite itself says one is complete."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip().rstrip(";").strip():
                yield pending
            pending = ""


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
        except sqlite3.DatabaseError as exc:
            raise BackendUnavailable(f"cannot open SQLite database {self.path}: {exc}") from exc
        try:
            mode = self._use_wal(conn)
            # The value comes from a fixed set checked by config.parse_dsn; PRAGMA
            # arguments cannot be bound as parameters.
            conn.execute(f"PRAGMA synchronous={self.dsn.synchronous.upper()}")
            conn.execute("PRAGMA foreign_keys=ON")
            # a waiting job cancelled by the trigger releases its own dependents
            conn.execute("PRAGMA recursive_triggers=ON")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise BackendUnavailable(f"cannot open SQLite database {self.path}: {exc}") from exc
        if mode.lower() != "wal":
            conn.close()
            raise BackendUnavailable(
                f"SQLite database {self.path} cannot use WAL mode (got {mode!r}); "
                "is it on a network file system?"
            )
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> str:
        """Put the file in WAL mode (it stays so) and return the journal mode it is in.

        SQLite does not wait on its busy handler to convert a file to WAL: a process
        opening a new database while another converts it gets "database is locked" at
        once. So the mode is read first (no lock once the file is WAL), and a conversion
        that meets a lock is retried within the busy timeout.
        """
        deadline = time.monotonic() + self._busy_timeout
        pause = 0.005
        while True:
            try:
                mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
                if mode.lower() == "wal":
                    return mode
                return str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

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

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        self._check_process()
        try:
            yield self._conn
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
        """Create the schema (``schema.sql``) or apply the migrations it is behind.

        Under the write lock, the version is read again, so processes migrating at once
        apply each migration once.
        """
        before = self._schema_version()
        if before is not None and before >= SCHEMA_VERSION:
            return []
        applied: list[int] = []
        try:
            with self._write() as conn:
                current = self._schema_version()
                if current is None:
                    for statement in _statements(read_sql("sqlite", "schema.sql")):
                        conn.execute(statement)
                    return [SCHEMA_VERSION]
                for version, name, filename in _migrations():
                    if version <= current:
                        continue
                    for statement in _statements(read_sql("sqlite", f"migrations/{filename}")):
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO migrations (version, name, applied_at) VALUES (?, ?, ?)",
                        (version, name, rows.ts(datetime.now().astimezone())),
                    )
                    applied.append(version)
        except sqlite3.DatabaseError as exc:
            raise BackendUnavailable(
                f"cannot create the tasktrail schema in {self.path}: {exc}"
            ) from exc
        return applied

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
    ) -> list[Enqueued]:
        if not jobs:
            return []
        if connection is not None:
            return job_sql.enqueue_in(self._caller_connection(connection), jobs, now)
        with self._write() as conn:
            enqueued = job_sql.enqueue_in(conn, jobs, now)
        notify_all(self._wake_dir)
        return enqueued

    def _caller_connection(self, connection: Any) -> sqlite3.Connection:
        connection = driver_connection(connection, "sqlite")
        if not isinstance(connection, sqlite3.Connection):
            raise InvalidArguments(
                "connection= for the SQLite backend must be a sqlite3.Connection "
                "or a SQLAlchemy Connection or Session, "
                f"got {type(connection).__name__}"
            )
        files = {row[2] for row in connection.execute("PRAGMA database_list") if row[1] == "main"}
        if str(self.path) not in files:
            raise InvalidArguments(
                f"connection= is open on {', '.join(files) or 'an in-memory database'}, "
                f"not on the tasktrail database {self.path}"
            )
        # (what the backend's own connections do: see _connect)
        connection.execute("PRAGMA recursive_triggers=ON")
        return connection

    def cancel(self, job_id: int, *, now: datetime, by: str, reason: str | None = None) -> Job:
        detail = {"by": by, **({"reason": reason} if reason else {})}
        params = {"job_id": job_id, "now": rows.ts(now)}
        with self._write() as conn:
            row = conn.execute(_Q["cancel_waiting"], params).fetchone()
            kind = "cancelled"
            if row is None:
                row = conn.execute(_Q["request_cancel"], params).fetchone()
                kind = "cancel_requested"
            if row is None:
                job = reads.get_job(conn, job_id)
                if job is not None and job.status == "running":
                    return job  # asked already; its worker is on it
                raise_transition_error(job_id, job.status if job else None, "cancelled")
            conn.execute(
                _Q["insert_event"], rows.event_row(job_id, now, kind, row[0], None, detail)
            )
        # a cancel request wakes its worker; a cancel may have released waiting jobs
        notify_all(self._wake_dir, CANCEL if kind == "cancel_requested" else JOBS)
        return self._must_get(job_id)

    def cancel_requests(self, worker_id: int) -> list[int]:
        with self._reading() as conn:
            return [row[0] for row in conn.execute(_Q["cancel_requests"], {"worker_id": worker_id})]

    def retry(self, job_id: int, *, now: datetime, by: str) -> Job:
        with self._write() as conn:
            holder = conn.execute(_Q["unique_key_holder"], {"job_id": job_id}).fetchone()
            if holder is not None:
                raise InvalidTransition(
                    f"job {job_id} cannot be retried: job {holder[0]} with the same unique key "
                    f"{holder[2]!r} is {holder[1]}; wait for it to finish or cancel it"
                )
            row = conn.execute(_Q["retry_job"], {"job_id": job_id, "now": rows.ts(now)}).fetchone()
            if row is None:
                status = conn.execute(_Q["job_status"], {"job_id": job_id}).fetchone()
                raise_transition_error(job_id, status[0] if status else None, "retried")
            conn.execute(
                _Q["insert_event"], rows.event_row(job_id, now, "retried", row[0], None, {"by": by})
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
                    "now": rows.ts(now),
                    "expires_at": rows.ts(now + timedelta(seconds=info.lease_seconds)),
                    "autoscale_min": info.autoscale[0] if info.autoscale else None,
                    "autoscale_max": info.autoscale[1] if info.autoscale else None,
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
                    "now": rows.ts(now),
                    "expires_at": rows.ts(now + timedelta(seconds=lease[0])),
                },
            )
        return True

    def unregister_worker(self, worker_id: int, *, now: datetime) -> None:
        with self._write() as conn:
            conn.execute(_Q["unregister_worker"], {"worker_id": worker_id, "now": rows.ts(now)})
            recovered = job_sql.take_back(conn, worker_id, now)
        if recovered:
            notify_all(self._wake_dir)
        if self._listener is not None:
            self._listener.close()
            self._listener = None

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
        if claim > 0 and not outcomes and not start_ids:
            # A cheap read first: an idle worker polling an empty queue takes no write lock.
            with self._reading() as conn:
                if not job_sql.candidates(conn, queues, 1, now).ids:
                    return Exchange([], [], [])
        elif claim <= 0 and not outcomes and not start_ids:
            return Exchange([], [], [])
        with self._write() as conn:
            rejected = job_sql.finish(conn, worker_id, outcomes, now) if outcomes else []
            started = self._start(conn, worker_id, start_ids, now)
            run_now: list[HeldJob] = []
            reserved: list[HeldJob] = []
            if claim > 0 and conn.execute(_Q["worker_lease"], {"worker_id": worker_id}).fetchone():
                chosen = job_sql.candidates(conn, queues, claim, now)
                run_now = self._claim(
                    conn, worker_id, chosen.ids[:start_claimed], now, "started", child_pids
                )
                job_sql.record_starts(conn, chosen.rated, [job.id for job in run_now], now)
                reserved = self._claim(conn, worker_id, chosen.ids[start_claimed:], now, "reserved")
        if any(requeues_now(outcome, now) for outcome in outcomes):
            notify_all(self._wake_dir)  # jobs given back to run now: wake idle workers
        return Exchange(rejected, started + run_now, reserved)

    @staticmethod
    def _claim(
        conn: sqlite3.Connection,
        worker_id: int,
        ids: list[int],
        now: datetime,
        kind: str,
        child_pids: Sequence[int] = (),
    ) -> list[HeldJob]:
        """Claim the jobs ``ids`` (best first): ``reserved``, or ``started`` at once, the
        ``n``-th for the child process ``child_pids[n]``."""
        if not ids:
            return []
        statement = _Q["claim_start" if kind == "started" else "claim"]
        params = {"ids": json.dumps(ids), "worker_id": worker_id, "now": rows.ts(now)}
        found = conn.execute(statement, params).fetchall()
        jobs = {row[0]: held(row) for row in found}
        # started: at the row's started_at (a job under a lock: not before its key's last end)
        at = {row[0]: datetime.fromisoformat(row[16]) for row in found if len(row) > 16}
        pids = dict(zip(ids, child_pids, strict=False))
        claimed = [
            replace(jobs[job_id], child_pid=pids.get(job_id)) if job_id in pids else jobs[job_id]
            for job_id in ids
            if job_id in jobs
        ]
        conn.executemany(
            _Q["insert_event"],
            [
                rows.event_row(
                    job.id, at.get(job.id, now), kind, job.attempts, worker_id, None, job.child_pid
                )
                for job in claimed
            ],
        )
        return claimed

    @staticmethod
    def _start(
        conn: sqlite3.Connection, worker_id: int, job_ids: Sequence[int], now: datetime
    ) -> list[HeldJob]:
        if not job_ids:
            return []
        started_rows = conn.execute(
            _Q["start"],
            {"ids": json.dumps(list(job_ids)), "worker_id": worker_id, "now": rows.ts(now)},
        ).fetchall()
        by_id = {row[0]: held(row) for row in started_rows}
        started = [by_id[job_id] for job_id in job_ids if job_id in by_id]
        conn.executemany(
            _Q["insert_event"],
            [rows.event_row(job.id, now, "started", job.attempts, worker_id) for job in started],
        )
        return started

    def release(
        self, worker_id: int, job_ids: Sequence[int], *, now: datetime, reason: str
    ) -> None:
        if not job_ids:
            return
        with self._write() as conn:
            released = conn.execute(
                _Q["release"], {"ids": json.dumps(list(job_ids)), "worker_id": worker_id}
            ).fetchall()
            conn.executemany(
                _Q["insert_event"],
                [
                    rows.event_row(job_id, now, "released", attempts, worker_id, {"reason": reason})
                    for job_id, attempts in released
                ],
            )
        notify_all(self._wake_dir)

    def recover_lost(self, *, now: datetime) -> list[RecoveredJob]:
        now_text = rows.ts(now)
        with self._reading() as conn:
            if not conn.execute(_Q["expired_workers"], {"now": now_text}).fetchall():
                return []
        recovered: list[RecoveredJob] = []
        with self._write() as conn:
            for (worker_id,) in conn.execute(_Q["expired_workers"], {"now": now_text}).fetchall():
                conn.execute(_Q["mark_worker_lost"], {"worker_id": worker_id, "now": now_text})
                recovered.extend(job_sql.take_back(conn, worker_id, now))
        if recovered:
            notify_all(self._wake_dir)
        return recovered

    def wakeup_fileno(self) -> int | None:
        return self._listener.fileno() if self._listener is not None else None

    def consume_wakeups(self) -> bool:
        return self._listener is not None and CANCEL in self._listener.drain()

    # -- reading --------------------------------------------------------------------

    def get_job(self, job_id: int) -> Job | None:
        with self._reading() as conn:
            return reads.get_job(conn, job_id)

    def _must_get(self, job_id: int) -> Job:
        job = self.get_job(job_id)
        assert job is not None, f"job {job_id} vanished inside its own transaction"
        return job

    def list_jobs(self, job_filter: JobFilter) -> list[Job]:
        with self._reading() as conn:
            return reads.list_jobs(conn, job_filter)

    def list_events(self, job_id: int) -> list[Event]:
        with self._reading() as conn:
            return reads.list_events(conn, job_id)

    def after_results(self, job_id: int) -> list[tuple[int, str | None, Any]]:
        with self._reading() as conn:
            found = conn.execute(_Q["after_results"], {"job_id": job_id}).fetchall()
        return [(after_id, status, FROM_TEXT.data(result)) for after_id, status, result in found]

    def list_workers(
        self, *, include_stopped: bool = False, limit: int | None = 100
    ) -> list[WorkerRecord]:
        with self._reading() as conn:
            return reads.list_workers(conn, include_stopped, limit)

    # -- controlling workers and queues ---------------------------------------------

    def worker_control(self, worker_id: int) -> WorkerControl:
        with self._reading() as conn:
            found = conn.execute(_Q["worker_control"], {"worker_id": worker_id}).fetchone()
        if found is None:
            return WorkerControl(None, frozenset())
        return WorkerControl(found[0], frozenset(json.loads(found[1] or "[]")))

    def update_worker_processes(
        self, worker_id: int, *, processes: int, reserve: int, now: datetime
    ) -> None:
        with self._write() as conn:
            conn.execute(
                _Q["update_worker_processes"],
                {"worker_id": worker_id, "processes": processes, "reserve": reserve},
            )

    def request_processes(self, name: str, processes: int, *, now: datetime) -> int:
        with self._write() as conn:
            asked = conn.execute(
                _Q["request_processes"], {"name": name, "processes": processes}
            ).fetchall()
        if asked:
            notify_all(self._wake_dir, CANCEL)  # the workers look at control requests now
        return len(asked)

    def queued_queues(self) -> list[str]:
        with self._reading() as conn:
            return [row[0] for row in conn.execute(_Q["queued_queues"])]

    def has_backlog(self, queues: Sequence[str], *, now: datetime) -> bool:
        params = {"now": rows.ts(now), "any_queue": not queues, "queues": json.dumps(list(queues))}
        with self._reading() as conn:
            return bool(conn.execute(_Q["has_backlog"], params).fetchone()[0])

    def set_queue_paused(self, name: str, paused: bool, *, by: str, now: datetime) -> None:
        params = {"name": name, "paused": paused, "by": by, "now": rows.ts(now)}
        with self._write() as conn:
            conn.execute(_Q["set_queue_paused"], params)
        notify_all(self._wake_dir, CANCEL)  # the workers look at control requests now

    def list_queues(self) -> list[QueueState]:
        with self._reading() as conn:
            return [rows.queue(row) for row in conn.execute(_Q["list_queues"])]

    def task_stats(self, *, since: datetime, now: datetime) -> list[TaskStats]:
        with self._reading() as conn:
            return reads.task_stats(conn, since, now)

    def ended_counts(
        self, *, since: datetime, now: datetime, bucket_seconds: float
    ) -> list[tuple[int, str, str, int]]:
        params = {"since": rows.ts(since), "now": rows.ts(now), "bucket": bucket_seconds}
        with self._reading() as conn:
            found = conn.execute(_Q["ended_counts"], params).fetchall()
        return sorted((int(slot), task, status, int(n)) for slot, task, status, n in found)

    def prune(self, *, older_than: dict[str, timedelta], now: datetime) -> PruneReport:
        with self._write() as conn:
            return reads.prune(conn, older_than, now)

    # -- schedules --------------------------------------------------------------------

    def save_schedule(
        self, definition: ScheduleDef, *, now: datetime, replace: bool = False
    ) -> ScheduleRecord:
        with self._write() as conn:
            return schedules.save(conn, definition, now, replace)

    def get_schedule(self, name: str) -> ScheduleRecord | None:
        with self._reading() as conn:
            return schedules.get(conn, name)

    def list_schedules(self) -> list[ScheduleRecord]:
        with self._reading() as conn:
            return schedules.list_all(conn)

    def set_schedule_paused(self, name: str, paused: bool, *, now: datetime) -> ScheduleRecord:
        with self._write() as conn:
            return schedules.set_paused(conn, name, paused, now)

    def remove_schedule(self, name: str) -> bool:
        with self._write() as conn:
            return schedules.remove(conn, name)

    def fire_due_schedules(
        self,
        *,
        now: datetime,
        worker_id: int | None,
        make_job: Callable[[ScheduleRecord, datetime], NewJob | None],
    ) -> list[Tick]:
        with self._reading() as conn:
            if not conn.execute(_Q["due_schedules"], {"now": rows.ts(now)}).fetchone():
                return []
        with self._write() as conn:
            ticks = fire_due(schedules.SqliteTickStore(conn), now, worker_id, make_job)
        if any(tick.job_id is not None for tick in ticks):
            notify_all(self._wake_dir)
        return ticks

    def list_ticks(self, name: str, *, limit: int | None = 100) -> list[Tick]:
        with self._reading() as conn:
            return schedules.list_ticks(conn, name, limit)
