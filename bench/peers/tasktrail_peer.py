"""tasktrail itself, driven through its public API and its ``tasktrail worker`` command.

Producers use ``task.enqueue`` (one job, one transaction) and ``app.enqueue_many`` (one
statement per batch). Workers are real subprocesses::

    tasktrail worker --app bench.apps.tasktrail_app:app -p P -r R --poll-interval I --quiet

with full history on (it cannot be turned off). "Drained" is read from the database: no
job left queued, reserved or running. Latency is what the job itself sees: the task
``bench.probe(sent)`` returns ``time.time() - sent`` as its first statement in the child
process, ``sent`` being the producer's ``time.time()`` just before ``enqueue`` (same host,
same clock), so it covers the enqueue's commit, the wake-up, the claim, the start and the
hand-over to a child. (The database's ``started_at - created_at`` stops at the claim, a
little earlier; it is logged alongside for comparison.)

Every measurement gets a fresh PostgreSQL schema (``?schema=bench_…``, dropped after) or
a fresh SQLite file in a temporary directory.

Beyond :class:`Peer`, this driver has the tasktrail-only scenarios: a drain among a large
backlog and history (:meth:`TasktrailPeer.scale_setup` and friends), the claim's plan
(:meth:`TasktrailPeer.claim_plan`) and the memory of a long drain
(:meth:`TasktrailPeer.memory_drain`).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import mixed
from bench.config import PG_DSN, ROOT
from bench.peers._procs import stop_groups
from bench.peers.base import Latency, NotSupported, Peer

#: The best settings measured on 2 cores (see bench/README.md, "tasktrail's settings"):
#: reserve = RESERVE_PER_PROCESS x processes (tasktrail's default is 64 x processes; 4 x
#: processes, the default before, made no-op drains 2-3x slower); poll
#: interval in seconds (only a fallback: PostgreSQL wakes workers by LISTEN/NOTIFY, SQLite
#: by a local socket; 0.05 and 0.2 s measured no better).
RESERVE_PER_PROCESS = {"postgresql": 256, "sqlite": 64}
POLL_INTERVAL = {"postgresql": 1.0, "sqlite": 1.0}
#: Jobs per enqueue_many call in bulk enqueues.
BULK_BATCH = 5000
#: How often the driver looks at the database while waiting for a drain.
CHECK_INTERVAL = 0.005
#: Longest wait for a drain before giving up.
TIMEOUT = 900.0

APP_SPEC = "bench.apps.tasktrail_app:app"


def _compile_sources() -> None:
    """Byte-compile tasktrail and the bench's task modules once, as ``pip install`` does
    for the peers' packages: an editable install has no ``.pyc`` files, and a worker
    started with ``PYTHONDONTWRITEBYTECODE`` set would compile every module from source
    on every start, a cost the peers never pay."""
    import compileall

    import tasktrail

    for package in (Path(tasktrail.__file__).parent, Path(__file__).resolve().parents[1] / "apps"):
        compileall.compile_dir(package, quiet=1)


@dataclass
class _Store:
    """One throw-away tasktrail database: a PostgreSQL schema or a SQLite file."""

    dsn: str
    app: Any
    schema: str | None = None
    path: Path | None = None
    _conn: Any = field(default=None, repr=False)

    def sql(self, query: str, params: Any = ()) -> list[tuple[Any, ...]]:
        """Run one read query on the driver's own connection (not the app's)."""
        if self._conn is None:
            if self.schema is not None:
                import psycopg

                self._conn = psycopg.connect(PG_DSN, autocommit=True)
                self._conn.execute(f'SET search_path TO "{self.schema}"')
            else:
                self._conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
        if self.schema is None:
            query = query.replace("%s", "?")
        return list(self._conn.execute(query, params).fetchall())

    def active(self) -> bool:
        """Is any job queued, reserved or running? (Each branch reads a partial index.)"""
        [(found,)] = self.sql(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'queued')"
            " OR EXISTS (SELECT 1 FROM jobs WHERE status IN ('reserved', 'running'))"
        )
        return bool(found)

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        self.app.close()


class _Workers:
    """``tasktrail worker`` subprocesses, each in its own process group."""

    def __init__(self, dsn: str, pgoptions: str | None = None) -> None:
        self.env = {**os.environ, "TASKTRAIL_DSN": dsn}
        if pgoptions:  # libpq's session settings for the workers' connections
            self.env["PGOPTIONS"] = pgoptions
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logdir = Path(tempfile.mkdtemp(prefix="bench-tasktrail-"))

    def start(self, processes: int, reserve: int, poll_interval: float) -> None:
        log = self._logdir / f"worker-{len(self.procs)}.log"
        argv = [
            tasktrail_command(),
            "worker",
            "--app",
            APP_SPEC,
            "-p",
            str(processes),
            "-r",
            str(reserve),
            "--poll-interval",
            str(poll_interval),
            "--quiet",
        ]
        with log.open("wb") as out:
            self.procs.append(
                subprocess.Popen(
                    argv,
                    cwd=ROOT,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def check(self) -> None:
        for index, proc in enumerate(self.procs):
            if proc.poll() is not None:
                tail = (self._logdir / f"worker-{index}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"tasktrail worker exited with {proc.returncode}:\n{tail}")

    def warnings(self) -> str:
        """What the workers logged (warnings and errors only: they run --quiet)."""
        return "".join(
            path.read_text(errors="replace") for path in sorted(self._logdir.glob("*.log"))
        )

    def children(self, index: int = 0) -> list[int]:
        pid = self.procs[index].pid
        try:
            text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def stop(self, grace: float = 30.0) -> None:
        stop_groups(self.procs, signal.SIGTERM, grace)
        shutil.rmtree(self._logdir, ignore_errors=True)


def tasktrail_command() -> str:
    path = Path(sys.executable).parent / "tasktrail"
    if not path.exists():
        raise NotSupported(f"the tasktrail command is not installed next to {sys.executable}")
    return str(path)


def _wait(done: Callable[[], bool], workers: _Workers | None, what: str) -> float:
    """Poll ``done`` until true; return the ``perf_counter`` time it was seen true."""
    deadline = time.monotonic() + TIMEOUT
    checks = 0
    while not done():
        checks += 1
        if workers is not None and checks % 200 == 0:
            workers.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {TIMEOUT:.0f} s")
        time.sleep(CHECK_INTERVAL)
    return time.perf_counter()


def latency_summary(delays: list[float]) -> Latency:
    delays = sorted(delays)
    if len(delays) > 1:
        p95 = statistics.quantiles(delays, n=100, method="inclusive")[94]
    else:
        p95 = delays[0]
    return Latency(p50=statistics.median(delays), p95=p95, max=delays[-1])


def rss_kib(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) of a process in KiB, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    if len(values) < 2:
        return None
    return values["VmRSS"], values["VmHWM"]


class TasktrailPeer(Peer):
    """tasktrail on PostgreSQL or SQLite. See the module docstring."""

    def __init__(
        self,
        store: str = "postgresql",
        *,
        reserve_per_process: int | None = None,
        poll_interval: float | None = None,
        pgoptions: str | None = None,
        mixed_single_task: bool = False,
    ) -> None:
        if store not in ("postgresql", "sqlite"):
            raise ValueError(f"store must be postgresql or sqlite, not {store!r}")
        self.store = store
        self.key = "tasktrail-pg" if store == "postgresql" else "tasktrail-sqlite"
        self.name = "tasktrail (PostgreSQL)" if store == "postgresql" else "tasktrail (SQLite)"
        self.reserve_per_process = reserve_per_process or RESERVE_PER_PROCESS[store]
        self.poll_interval = poll_interval or POLL_INTERVAL[store]
        #: libpq PGOPTIONS for the workers' sessions (diagnosis only; None: as shipped)
        self.pgoptions = pgoptions
        #: The mixed scenario's jobs all of one task (bench.sleep) rather than two
        #: (diagnosis only: tasktrail learns run times per task).
        self.mixed_single_task = mixed_single_task
        #: Where to write the job histories of the mixed runs (JSON), if anywhere.
        self.history_dir: Path | None = None
        self._mixed_runs = 0
        self._tmp: Path | None = None
        self._stores: list[_Store] = []
        self._scale: _Store | None = None
        #: Extra facts of the last measurement, for the harness's log.
        self.detail: dict[str, Any] = {}

    # -- Peer -----------------------------------------------------------------------------

    def configuration(self) -> str:
        version = importlib.metadata.version("tasktrail")
        where = (
            "PostgreSQL (LISTEN/NOTIFY wake-up, one schema per run)"
            if self.store == "postgresql"
            else "SQLite WAL, synchronous=NORMAL (local socket wake-up, one file per run)"
        )
        return (
            f"tasktrail {version} on {where}: `tasktrail worker -p P "
            f"-r {self.reserve_per_process}xP --poll-interval {self.poll_interval:g}`, "
            f"full history; single = `task.enqueue()` (one transaction each), bulk = "
            f"`app.enqueue_many()` in batches of {BULK_BATCH:,}"
        )

    def setup(self) -> None:
        try:
            import tasktrail  # noqa: F401
        except ImportError as exc:
            raise NotSupported(f"tasktrail is not importable: {exc}") from exc
        tasktrail_command()
        _compile_sources()
        if self.store == "postgresql":
            try:
                import psycopg
            except ImportError as exc:
                raise NotSupported("psycopg is not installed (pip install .[postgres])") from exc
            try:
                psycopg.connect(PG_DSN, connect_timeout=5).close()
            except psycopg.Error as exc:
                raise NotSupported(f"PostgreSQL at {PG_DSN} is unreachable: {exc}") from exc
        self._tmp = Path(tempfile.mkdtemp(prefix="bench-tasktrail-"))

    def teardown(self) -> None:
        for store in list(self._stores):
            self._drop(store)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def enqueue_single(self, count: int) -> float:
        with self._fresh() as store:
            noop = store.app.get_task("bench.noop")
            noop.enqueue()  # connect and plan outside the timing
            began = time.perf_counter()
            for _ in range(count):
                noop.enqueue()
            return count / (time.perf_counter() - began)

    def enqueue_bulk(self, count: int) -> float:
        with self._fresh() as store:
            app = store.app
            noop = app.get_task("bench.noop")
            app.enqueue_many([noop.prepare()])
            began = time.perf_counter()
            left = count
            while left > 0:
                batch = min(BULK_BATCH, left)
                app.enqueue_many(noop.prepare() for _ in range(batch))
                left -= batch
            return count / (time.perf_counter() - began)

    def drain(self, count: int, workers: int, processes: int) -> float:
        with self._fresh() as store:
            self._fill(store, count)
            return self._drain(store, count, workers, processes)

    def latency(self, count: int, interval: float) -> Latency:
        with self._fresh() as store:
            probe = store.app.get_task("bench.probe")
            pool = _Workers(store.dsn, self.pgoptions)
            try:
                pool.start(1, self.reserve_per_process, self.poll_interval)
                self._wait_ready(store, pool, processes=1)
                before = self._commits(store)
                start = time.perf_counter()
                for index in range(count):
                    delay = start + index * interval - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    probe.enqueue(time.time())
                time.sleep(0.1)  # the last probe ends within milliseconds
                # the worker's transactions (and anything else on the server meanwhile)
                worker_commits = self._commits(store) - before - count
                _wait(lambda: not store.active(), pool, "the latency probes")
                warnings = pool.warnings()
            finally:
                pool.stop()
            rows = store.sql(
                "SELECT result, status FROM jobs WHERE task = 'bench.probe' ORDER BY id"
            )
            bad = [status for _, status in rows if status != "succeeded"]
            if len(rows) != count or bad:
                raise RuntimeError(f"{len(rows)} probes, not succeeded: {bad[:5]} {warnings}")
            delays = [json.loads(r) if isinstance(r, str) else float(r) for r, _ in rows]
            claim = self._db_latencies(store)
            self.detail = {"claim p50 ms (started_at - created_at)": claim}
            if store.schema is not None:
                self.detail["worker transactions per probe"] = round(worker_commits / count, 2)
            return latency_summary(delays)

    def sleep_jobs(self, count: int, seconds: float, processes: int) -> float:
        with self._fresh() as store:
            app = store.app
            sleep = app.get_task("bench.sleep")
            app.enqueue_many(sleep.prepare(seconds) for _ in range(count))
            pool = _Workers(store.dsn, self.pgoptions)
            try:
                began = time.perf_counter()
                pool.start(processes, self.reserve_per_process * processes, self.poll_interval)
                ended = _wait(lambda: not store.active(), pool, "the sleeping jobs")
            finally:
                pool.stop()
            self._check_succeeded(store, count)
            return ended - began

    def mixed_jobs(self, durations: Sequence[float], workers: int, processes: int) -> float:
        """See :meth:`Peer.mixed_jobs`. The jobs lasting the longest of ``durations`` are
        ``bench.mixed_long``, the others ``bench.mixed_short`` (both sleep their seconds),
        enqueued with one ``enqueue_many``; the end is seen by polling, as in a drain.
        Afterwards the jobs' histories are read (:func:`bench.mixed.diagnose`): the
        summary goes to the log, and the histories to ``history_dir`` if set."""
        from bench.apps.tasktrail_app import MIXED_LONG, MIXED_SHORT, SLEEP

        long_seconds = max(durations)
        with self._fresh() as store:
            app = store.app
            if self.mixed_single_task:
                sleep = app.get_task(SLEEP)
                jobs = [sleep.prepare(seconds) for seconds in durations]
            else:
                long, short = app.get_task(MIXED_LONG), app.get_task(MIXED_SHORT)
                jobs = [
                    (long if seconds >= long_seconds else short).prepare(seconds)
                    for seconds in durations
                ]
            pool = _Workers(store.dsn, self.pgoptions)
            try:
                for _ in range(workers):
                    pool.start(processes, self.reserve_per_process * processes, self.poll_interval)
                self._wait_ready(store, pool, processes)
                handles = app.enqueue_many(jobs)
                enqueued = time.perf_counter()
                enqueued_at = time.time()
                ended = _wait(lambda: not store.active(), pool, "the mixed jobs")
            finally:
                pool.stop()
            self._check_succeeded(store, len(durations))
            histories = []
            for position, (handle, seconds) in enumerate(zip(handles, durations, strict=True)):
                events = tuple(
                    mixed.HistoryEvent(e.kind, e.at, e.worker_id, e.child_pid, e.detail)
                    for e in app.backend.list_events(handle.id)
                )
                histories.append(mixed.JobHistory(position, seconds, events))
        makespan = ended - enqueued
        found = mixed.diagnose(histories, enqueued_at, workers * processes, long_seconds)
        self.detail = {"histories": found.summary()}
        if self.history_dir is not None:
            self._mixed_runs += 1
            path = self.history_dir / f"mixed-{self.key}-{self._mixed_runs}.json"
            self.history_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(
                json.dumps(
                    {
                        "store": self.store,
                        "makespan": makespan,
                        "enqueued_at": enqueued_at,
                        "summary": found.summary(),
                        "jobs": [
                            {
                                "id": handle.id,
                                "position": h.position,
                                "seconds": h.seconds,
                                "events": [
                                    {
                                        "kind": e.kind,
                                        "at": round(e.at.timestamp() - enqueued_at, 4),
                                        "worker_id": e.worker_id,
                                        "child_pid": e.child_pid,
                                        "detail": e.detail,
                                    }
                                    for e in h.events
                                ],
                            }
                            for handle, h in zip(handles, histories, strict=True)
                        ],
                    },
                    indent=1,
                    default=str,
                )
            )
            self.detail["written"] = str(path)
        return makespan

    # -- tasktrail-only scenarios ---------------------------------------------------------

    def scale_setup(self, backlog: int, events: int, log: Callable[[str], None]) -> dict[str, Any]:
        """A schema with ``backlog`` queued no-op jobs (without refs, as the jobs of the
        empty-table drain) and ``events`` history events: the backlog's ``enqueued``
        events, and three events (enqueued, started, succeeded — one job in 20 failed)
        for each of ``(events - backlog) / 3`` finished jobs with refs (10,000 distinct
        objects), spread over the past 30 days. Set-based SQL (``INSERT … SELECT
        generate_series``) with the secondary indexes dropped during the load and
        rebuilt from their own definitions, then ``VACUUM ANALYZE`` (the steady state
        autovacuum keeps). Returns what was made and how long it took."""
        if self.store != "postgresql":
            raise NotSupported("the scale scenario is for PostgreSQL")
        import psycopg

        store = self._new_store()
        self._scale = store
        schema = store.schema
        finished = max(0, (events - backlog) // 3)
        timings: dict[str, float] = {}
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            conn.execute("SET synchronous_commit = off")
            conn.execute("SET maintenance_work_mem = '512MB'")
            began = time.perf_counter()
            indexes = conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s"
                " AND tablename IN ('jobs', 'events') AND indexname NOT LIKE '%%pkey'",
                (schema,),
            ).fetchall()
            for name, _ in indexes:
                conn.execute(f'DROP INDEX "{schema}"."{name}"')
            chunk = 1_000_000
            for low in range(0, finished, chunk):
                high = min(finished, low + chunk)
                log(f"finished jobs {low:,}..{high:,} of {finished:,}")
                conn.execute(
                    "INSERT INTO jobs (task, queue, status, ref_type, ref_id, args, kwargs,"
                    " attempts, max_attempts, run_at, created_at, started_at, finished_at,"
                    " worker_id, result, error)"
                    " SELECT 'bench.noop', 'default',"
                    "  CASE WHEN n %% 20 = 0 THEN 'failed' ELSE 'succeeded' END,"
                    "  'website', (n %% 10000)::text, '[]', '{}', 1, 1, t, t,"
                    "  t + interval '1 ms', t + interval '3 ms', 1,"
                    "  CASE WHEN n %% 20 = 0 THEN NULL ELSE 'null'::json END,"
                    "  CASE WHEN n %% 20 = 0 THEN 'RuntimeError: boom' END"
                    " FROM generate_series(%s::bigint, %s::bigint) AS n,"
                    "  LATERAL (SELECT now() - interval '30 days'"
                    "   + (n * (interval '30 days' / greatest(%s::bigint, 1))) AS t) AS x",
                    (low + 1, high, finished),
                )
            timings["finished jobs"] = time.perf_counter() - began
            step = time.perf_counter()
            [(first, last)] = conn.execute("SELECT min(id), max(id) FROM jobs").fetchall()
            job_chunk = chunk // 3
            if first is not None:
                for low in range(first, last + 1, job_chunk):
                    high = min(last, low + job_chunk - 1)
                    log(f"history of jobs {low:,}..{high:,} of {last:,}")
                    conn.execute(
                        "INSERT INTO events (job_id, at, kind, attempt, worker_id, detail)"
                        " SELECT j.id, j.created_at + k.offset_, k.kind, k.attempt,"
                        "  CASE WHEN k.attempt = 0 THEN NULL ELSE 1 END,"
                        "  CASE k.kind WHEN 'succeeded' THEN '{\"runtime\": 0.001}'::json"
                        "   WHEN 'failed' THEN '{\"error\": \"RuntimeError: boom\"}'::json END"
                        " FROM jobs j CROSS JOIN LATERAL (VALUES"
                        "  ('enqueued', 0, interval '0'), ('started', 1, interval '1 ms'),"
                        "  (j.status, 1, interval '3 ms')) AS k (kind, attempt, offset_)"
                        " WHERE j.id BETWEEN %s AND %s ORDER BY j.id",
                        (low, high),
                    )
            timings["history events"] = time.perf_counter() - step
            step = time.perf_counter()
            for low in range(0, backlog, chunk):
                high = min(backlog, low + chunk)
                log(f"queued backlog {low:,}..{high:,} of {backlog:,}")
                conn.execute(
                    "WITH made AS ("
                    " INSERT INTO jobs (task, queue, status, args, kwargs, run_at, created_at)"
                    " SELECT 'bench.noop', 'default', 'queued', '[]', '{}',"
                    "  now() - interval '1 hour', now() - interval '1 hour'"
                    " FROM generate_series(%s::bigint, %s::bigint) AS n"
                    " RETURNING id, created_at)"
                    " INSERT INTO events (job_id, at, kind, attempt)"
                    " SELECT id, created_at, 'enqueued', 0 FROM made ORDER BY id",
                    (low + 1, high),
                )
            timings["queued backlog"] = time.perf_counter() - step
            step = time.perf_counter()
            log(f"rebuilding {len(indexes)} indexes")
            for _, definition in indexes:
                conn.execute(definition)
            timings["indexes"] = time.perf_counter() - step
            step = time.perf_counter()
            log("VACUUM ANALYZE")
            conn.execute("VACUUM ANALYZE jobs")
            conn.execute("VACUUM ANALYZE events")
            timings["vacuum analyze"] = time.perf_counter() - step
            [(n_jobs, n_events, size)] = conn.execute(
                "SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM events),"
                " pg_size_pretty(pg_total_relation_size('jobs')"
                "  + pg_total_relation_size('events'))"
            ).fetchall()
        timings["total"] = time.perf_counter() - began
        return {
            "queued": backlog,
            "finished jobs": finished,
            "jobs": n_jobs,
            "events": n_events,
            "size": size,
            "seconds": timings,
        }

    def scale_drain(
        self,
        count: int,
        workers: int,
        processes: int,
        *,
        max_seconds: float = 120.0,
        pgoptions: str | None = None,
    ) -> float:
        """Jobs per second from worker start until ``count`` more jobs of the backlog are
        final (finished_at after the start: read through the ``jobs_finished`` index), or
        until ``max_seconds`` have passed (then: the jobs final by then, per second).
        ``pgoptions`` (libpq's PGOPTIONS) changes the workers' session settings, for
        diagnosis only."""
        store = self._scale
        if store is None:
            raise RuntimeError("scale_setup first")
        since = datetime.now(timezone.utc)
        pool = _Workers(store.dsn, pgoptions or self.pgoptions)
        finished = 0
        try:
            began = time.perf_counter()
            for _ in range(workers):
                pool.start(processes, self.reserve_per_process * processes, self.poll_interval)
            checks = 0
            while True:
                [(finished,)] = store.sql(
                    "SELECT count(*) FROM jobs WHERE finished_at >= %s", (since,)
                )
                ended = time.perf_counter()
                if finished >= count or ended - began >= max_seconds:
                    break
                checks += 1
                if checks % 50 == 0:
                    pool.check()
                time.sleep(0.02)
        finally:
            pool.stop()
        self.detail = {"jobs": finished, "seconds": round(ended - began, 1)}
        if finished == 0:
            raise RuntimeError(f"no job finished within {max_seconds:g} s")
        return finished / (ended - began)

    def claim_plan(self, claim: int = 100) -> dict[str, Any]:
        """The plan of the worker's hot statement (``exchange``, claiming ``claim`` jobs),
        nested statements included (the ``claimable_jobs`` function): captured from the
        backend as a worker would send it, run under auto_explain (log_analyze,
        log_nested_statements, client_min_messages=log) in a transaction rolled back."""
        import psycopg

        from tasktrail.clock import utcnow
        from tasktrail.job import WorkerInfo

        store = self._scale
        if store is None:
            raise RuntimeError("scale_setup first")
        backend = store.app.backend
        info = WorkerInfo("bench-explain", "bench", os.getpid(), 2, 8, (), 30.0)
        worker_id = backend.register_worker(info, now=utcnow())
        sent: list[tuple[Any, Any]] = []

        class Captured(Exception):
            pass

        real_execute = psycopg.Cursor.execute

        def capture(cursor: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
            text = query.decode() if isinstance(query, bytes) else str(query)
            if "claimable_jobs" in text:
                sent.append((text, params))
                raise Captured
            return real_execute(cursor, query, params, **kwargs)

        psycopg.Cursor.execute = capture  # type: ignore[method-assign]
        try:
            with contextlib.suppress(Captured):
                backend.exchange(
                    worker_id,
                    outcomes=(),
                    start_ids=(),
                    claim=claim,
                    start_claimed=2,
                    queues=(),
                    now=utcnow(),
                )
        finally:
            psycopg.Cursor.execute = real_execute  # type: ignore[method-assign]
        if not sent:
            raise RuntimeError("the exchange sent no statement with claimable_jobs")
        query, params = sent[0]
        notices: list[str] = []
        with psycopg.connect(PG_DSN) as conn:
            conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
            conn.execute("SET TIME ZONE 'UTC'")
            conn.execute("LOAD 'auto_explain'")
            for setting in (
                "plan_cache_mode = force_generic_plan",  # as the backend's connection
                "jit = off",  # as the backend's connection
                "auto_explain.log_min_duration = 0",
                "auto_explain.log_analyze = on",
                "auto_explain.log_buffers = on",
                "auto_explain.log_nested_statements = on",
                "auto_explain.log_format = json",
                "client_min_messages = log",
            ):
                conn.execute(f"SET LOCAL {setting}")
            began = time.perf_counter()
            # the backend sends its statements with PostgreSQL's own $n placeholders
            cursor = psycopg.RawCursor(conn) if isinstance(params, list) else conn.cursor()
            claimed = cursor.execute(query, params, prepare=True).fetchall()
            elapsed = time.perf_counter() - began
            conn.rollback()
        backend.unregister_worker(worker_id, now=utcnow())
        plans = []
        for message in notices:
            if message.startswith("duration:") and "{" in message:
                duration = float(message.split()[1])
                plans.append((duration, json.loads(message[message.index("{") :])))
        nodes = [node for _, plan in plans for node in _plan_nodes(plan)]
        on_queue_tables = [n for n in nodes if n.get("Relation Name") in ("jobs", "events")]
        scans = [n for n in on_queue_tables if "Scan" in n.get("Node Type", "")]
        jit_ms = sum(_jit_total(plan.get("JIT", {})) for _, plan in plans)
        return {
            "jit_ms": jit_ms,
            "claimed": sum(1 for row in claimed if row[1] is not None),
            "seconds": elapsed,
            "statements": [(d, _first_query_line(p)) for d, p in plans],
            "seq_scans": [
                n["Relation Name"] for n in on_queue_tables if n["Node Type"] == "Seq Scan"
            ],
            "indexes": sorted({str(n["Index Name"]) for n in scans if n.get("Index Name")}),
            "rows_read": sum(
                (n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0))
                * n.get("Actual Loops", 1)
                for n in scans
            ),
            "plans": [p for _, p in plans],
        }

    def scale_teardown(self) -> None:
        if self._scale is not None:
            self._drop(self._scale)
            self._scale = None

    def memory_drain(self, count: int, processes: int, every: float = 0.2) -> dict[str, Any]:
        """Drain ``count`` jobs with one worker of ``processes`` processes, sampling VmRSS
        and VmHWM of the supervisor and of its first child from /proc every ``every``
        seconds. Returns the rate and the samples as (fraction done, RSS KiB, HWM KiB)."""
        with self._fresh() as store:
            self._fill(store, count)
            pool = _Workers(store.dsn, self.pgoptions)
            samples: dict[str, list[tuple[float, int, int]]] = {"supervisor": [], "child": []}
            child_pids: list[int] = []
            try:
                began = time.perf_counter()
                pool.start(processes, self.reserve_per_process * processes, self.poll_interval)
                supervisor = pool.procs[0].pid
                left = count
                while left > 0:
                    time.sleep(every)
                    pool.check()
                    [(left,)] = store.sql(
                        "SELECT (SELECT count(*) FROM jobs WHERE status = 'queued')"
                        " + (SELECT count(*) FROM jobs WHERE status IN ('reserved', 'running'))"
                    )
                    done = 1 - left / count
                    if not child_pids:
                        child_pids = pool.children()[:1]
                    watched = [("supervisor", supervisor)] + [("child", p) for p in child_pids]
                    for role, pid in watched:
                        found = rss_kib(pid)
                        if found is not None:
                            samples[role].append((done, *found))
                elapsed = time.perf_counter() - began
                replaced = bool(child_pids) and child_pids[0] not in pool.children()
            finally:
                pool.stop()
            self._check_succeeded(store, count)
            return {"rate": count / elapsed, "samples": samples, "child_replaced": replaced}

    # -- plumbing -------------------------------------------------------------------------

    def _new_store(self) -> _Store:
        from bench.apps.tasktrail_app import make_app

        self.detail = {}

        if self._tmp is None:
            raise RuntimeError("setup() first")
        if self.store == "postgresql":
            schema = f"bench_{os.getpid()}_{secrets.token_hex(4)}"
            separator = "&" if "?" in PG_DSN else "?"
            dsn = f"{PG_DSN}{separator}schema={schema}"
            store = _Store(dsn, make_app(dsn), schema=schema)
        else:
            path = self._tmp / f"run-{secrets.token_hex(4)}.db"
            dsn = f"sqlite:///{path}"
            store = _Store(dsn, make_app(dsn), path=path)
        self._stores.append(store)
        store.app.backend  # noqa: B018 - create the tables now, outside any timing
        return store

    @contextlib.contextmanager
    def _fresh(self) -> Iterator[_Store]:
        store = self._new_store()
        try:
            yield store
        finally:
            self._drop(store)

    def _drop(self, store: _Store) -> None:
        store.close()
        if store in self._stores:
            self._stores.remove(store)
        if store.schema is not None:
            import psycopg

            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{store.schema}" CASCADE')
        elif store.path is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(FileNotFoundError):
                    Path(f"{store.path}{suffix}").unlink()
            shutil.rmtree(f"{store.path}-wake", ignore_errors=True)

    def _fill(self, store: _Store, count: int) -> None:
        app = store.app
        noop = app.get_task("bench.noop")
        left = count
        while left > 0:
            batch = min(BULK_BATCH, left)
            app.enqueue_many(noop.prepare() for _ in range(batch))
            left -= batch

    def _drain(
        self,
        store: _Store,
        count: int,
        workers: int,
        processes: int,
        done: Callable[[], bool] | None = None,
    ) -> float:
        pool = _Workers(store.dsn, self.pgoptions)
        try:
            began = time.perf_counter()
            for _ in range(workers):
                pool.start(processes, self.reserve_per_process * processes, self.poll_interval)
            ended = _wait(done or (lambda: not store.active()), pool, f"a drain of {count:,}")
        finally:
            pool.stop()
        if done is None:
            self._check_succeeded(store, count)
        return count / (ended - began)

    def _check_succeeded(self, store: _Store, count: int) -> None:
        rows = store.sql("SELECT status, count(*) FROM jobs GROUP BY status")
        counts = dict(rows)
        if counts.get("succeeded", 0) != count:
            raise RuntimeError(f"expected {count:,} succeeded jobs, found {counts}")

    def _wait_ready(self, store: _Store, pool: _Workers, processes: int) -> None:
        """Until every worker is registered and has forked its children, then a moment."""
        workers = len(pool.procs)
        _wait(
            lambda: (
                store.sql("SELECT count(*) FROM workers WHERE status = 'running'")[0][0] >= workers
                and all(len(pool.children(index)) >= processes for index in range(workers))
            ),
            pool,
            "the workers' start",
        )
        time.sleep(0.5)

    def _commits(self, store: _Store) -> int:
        """Transactions committed in the PostgreSQL database so far (0 on SQLite)."""
        if store.schema is None:
            return 0
        store.sql("SELECT pg_stat_clear_snapshot()")
        rows = store.sql(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        return int(rows[0][0])

    def _db_latencies(self, store: _Store) -> float | None:
        """Median of started_at - created_at (ms): enqueue to claim, as the database saw it."""
        if store.schema is not None:
            rows = store.sql(
                "SELECT extract(epoch FROM started_at - created_at) FROM jobs"
                " WHERE task = 'bench.probe'"
            )
            values = [float(r[0]) for r in rows if r[0] is not None]
        else:
            rows = store.sql("SELECT started_at, created_at FROM jobs WHERE task = 'bench.probe'")
            values = [
                (datetime.fromisoformat(s) - datetime.fromisoformat(c)).total_seconds()
                for s, c in rows
                if s and c
            ]
        return round(statistics.median(values) * 1000, 2) if values else None


def _plan_nodes(plan: Any) -> Iterator[dict[str, Any]]:
    if isinstance(plan, dict):
        if "Node Type" in plan:
            yield plan
        for value in plan.values():
            yield from _plan_nodes(value)
    elif isinstance(plan, list):
        for item in plan:
            yield from _plan_nodes(item)


def _jit_total(jit: dict[str, Any]) -> float:
    """Milliseconds a plan spent compiling with JIT (0 without JIT)."""
    timing = jit.get("Timing", {}) if isinstance(jit, dict) else {}
    total = timing.get("Total", 0)
    if isinstance(total, dict):  # PostgreSQL >= 15 nests {"Time": ...}
        total = total.get("Time", 0)
    return float(total or 0)


def _first_query_line(plan: dict[str, Any]) -> str:
    text = " ".join(str(plan.get("Query Text", "")).split())
    return text[:80]


def peers() -> list[Peer]:
    """The drivers this module offers to the harness."""
    return [TasktrailPeer("postgresql"), TasktrailPeer("sqlite")]
