"""Plumbing shared by the drivers of the PostgreSQL-based peers (procrastinate, PGQueuer,
Oban): a throw-away database per run, worker subprocesses, polling the peer's own tables
until a drain is final, and the start times that jobs write for the latency scenario.

Only psycopg, the standard library and ``bench.peers._procs`` (standard library only):
``bench/apps/oban_runner.py`` imports it too, from the Python 3.12 virtualenv that Oban
needs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from bench.peers._procs import die_with_parent, stop_groups

#: The repository's root: worker subprocesses run there so that ``bench.apps`` imports.
REPO_ROOT = Path(__file__).resolve().parents[2]

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"

#: How often the driver looks at the peer's tables while waiting for a drain. The end
#: time itself is read from the peer's own timestamps, so this only bounds the wait.
POLL_INTERVAL = 0.05

#: Environment variable naming the file where jobs append "<job id> <time.time()>".
START_LOG_ENV = "BENCH_START_LOG"
#: Environment variable naming the folder where a worker process that is ready to take
#: jobs creates a file named by its pid (for peers with no registry of their workers).
READY_DIR_ENV = "BENCH_READY_DIR"


def base_dsn() -> str:
    """The server to use: ``BENCH_PG_DSN``, else the tests' ``TASKTRAIL_TEST_PG_DSN``."""
    return os.environ.get("BENCH_PG_DSN") or os.environ.get("TASKTRAIL_TEST_PG_DSN") or DEFAULT_DSN


def url_for(dsn: str, dbname: str) -> str:
    """A ``postgresql://`` URL for ``dbname`` on the server of ``dsn`` (asyncpg takes
    URLs only, not libpq key=value strings)."""
    parts = conninfo_to_dict(dsn)
    user = parts.get("user") or os.environ.get("PGUSER") or "postgres"
    password = parts.get("password")
    host = parts.get("host") or "127.0.0.1"
    port = parts.get("port") or "5432"
    auth = quote(str(user), safe="")
    if password:
        auth += ":" + quote(str(password), safe="")
    return f"postgresql://{auth}@{host}:{port}/{quote(dbname, safe='')}"


class ThrowawayDatabase:
    """A database created for one peer's runs and dropped (with its connections) after."""

    def __init__(self, label: str, dsn: str | None = None) -> None:
        self.server_dsn = dsn or base_dsn()
        self.name = f"bench_{label}_{os.getpid()}_{secrets.token_hex(3)}"
        self.url = url_for(self.server_dsn, self.name)

    def create(self) -> None:
        with psycopg.connect(self.server_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))

    def drop(self) -> None:
        with psycopg.connect(self.server_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
            )

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True)

    def execute(self, statement: str) -> None:
        with self.connect() as conn:
            conn.execute(statement)  # type: ignore[arg-type]

    def scalar(self, query: str) -> object:
        with self.connect() as conn:
            row = conn.execute(query).fetchone()  # type: ignore[arg-type]
            return None if row is None else row[0]


class WorkerFailed(RuntimeError):
    """A worker subprocess exited while the driver waited for its jobs."""


class Workers:
    """Worker subprocesses, each in its own session so that a stop reaches its children.

    Their output goes to one log file per process under a temporary directory, shown in
    the error when a worker dies early.
    """

    def __init__(
        self,
        commands: Sequence[Sequence[str]],
        env: Mapping[str, str] | None = None,
        label: str = "worker",
    ) -> None:
        self.commands = [list(c) for c in commands]
        self.env = {**os.environ, **(env or {})}
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), self.env.get("PYTHONPATH", "")) if p
        )
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.label = label
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logdir = Path(tempfile.mkdtemp(prefix=f"bench-{label}-"))
        self.logs: list[Path] = []

    def start(self) -> float:
        """Spawn every process; return ``time.time()`` just before the first spawn."""
        started = time.time()
        for i, command in enumerate(self.commands):
            log = self.logdir / f"{self.label}-{i}.log"
            self.logs.append(log)
            with open(log, "wb") as out:
                self.procs.append(
                    subprocess.Popen(
                        command,
                        cwd=REPO_ROOT,
                        env=self.env,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        preexec_fn=die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
                    )
                )
        return started

    def check(self) -> None:
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
                raise WorkerFailed(
                    f"{self.label} process {proc.pid} exited with {proc.returncode}:\n{tail}"
                )

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (the peers' own graceful stop), then SIGKILL of the process groups."""
        stop_groups(self.procs, signal.SIGTERM, grace)

    def cleanup(self) -> None:
        self.stop()
        for log in self.logs:
            with contextlib.suppress(OSError):
                log.unlink()
        with contextlib.suppress(OSError):
            self.logdir.rmdir()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *_: object) -> None:
        self.cleanup()


def wait_for_zero(
    db: ThrowawayDatabase,
    query: str,
    workers: Workers | None = None,
    timeout: float = 600.0,
) -> None:
    """Poll ``query`` (a count of the jobs not final yet) on the peer's database until it
    is 0, checking meanwhile that the workers are alive."""
    deadline = time.monotonic() + timeout
    with db.connect() as conn:
        while True:
            row = conn.execute(query).fetchone()  # type: ignore[arg-type]
            left = int(row[0]) if row and row[0] is not None else 0
            if left == 0:
                return
            if workers is not None:
                workers.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{left} jobs not final after {timeout}s: {query}")
            time.sleep(POLL_INTERVAL)


def python_module(module: str, *args: str, python: str | None = None) -> list[str]:
    return [python or sys.executable, "-m", module, *args]


class StartLog:
    """A file that jobs append ``"<job id> <time.time()>"`` lines to when they start."""

    def __init__(self) -> None:
        fd, name = tempfile.mkstemp(prefix="bench-starts-", suffix=".log")
        os.close(fd)
        self.path = Path(name)

    def env(self) -> dict[str, str]:
        return {START_LOG_ENV: str(self.path)}

    def read(self) -> dict[str, float]:
        starts: dict[str, float] = {}
        for line in self.path.read_text().splitlines():
            job_id, _, at = line.partition(" ")
            if at:
                starts.setdefault(job_id, float(at))
        return starts

    def wait_for(self, count: int, workers: Workers | None = None, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.read()) < count:
            if workers is not None:
                workers.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(self.read())}/{count} jobs started in {timeout}s")
            time.sleep(POLL_INTERVAL)

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()


class ReadyDir:
    """A folder where worker processes say they are ready (:func:`mark_ready`)."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="bench-ready-"))

    def env(self) -> dict[str, str]:
        return {READY_DIR_ENV: str(self.path)}

    def wait_for(self, count: int, workers: Workers | None = None, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while len(list(self.path.iterdir())) < count:
            if workers is not None:
                workers.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {count} worker processes ready in {timeout:g}s")
            time.sleep(POLL_INTERVAL)

    def remove(self) -> None:
        for path in self.path.iterdir():
            with contextlib.suppress(OSError):
                path.unlink()
        with contextlib.suppress(OSError):
            self.path.rmdir()


def mark_ready() -> None:
    """Called by a worker process once it is about to take jobs (if the driver asked)."""
    folder = os.environ.get(READY_DIR_ENV)
    if folder:
        Path(folder, str(os.getpid())).touch()


def record_start(job_id: object) -> None:
    """Called first thing by a latency job: append its id and the time to the start log."""
    at = time.time()
    with open(os.environ[START_LOG_ENV], "a") as out:
        out.write(f"{job_id} {at!r}\n")


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary(enqueued: Mapping[str, float], started: Mapping[str, float]) -> dict:
    missing = [k for k in enqueued if k not in started]
    if missing:
        raise RuntimeError(f"{len(missing)} jobs never recorded a start (e.g. {missing[:3]})")
    values = [started[k] - enqueued[k] for k in enqueued]
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values),
    }


def pace(interval: float, index: int, origin: float) -> None:
    """Sleep until ``origin + index * interval`` (perf_counter clock), so that enqueues
    are ``interval`` apart whatever each enqueue costs."""
    delay = origin + index * interval - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
