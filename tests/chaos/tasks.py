"""The chaos run's tasks, run by real ``tasktrail worker`` processes.

Every body records each execution in a side log outside tasktrail's own tables: one
``start`` and one ``end`` row per (job, attempt, pid), with wall-clock times, so the
harness can tell afterwards which attempts really ran, in which process, and whether two
ran at once. Where that log lives:

* ``CHAOS_SIDE_DSN`` set (the PostgreSQL run): the table ``chaos_side.executions`` of the
  chaos cluster, written with the child's own connection (never tasktrail's). When the
  database cannot be reached in two seconds (stopped, restarting, partitioned away),
  the row goes to the spool file instead, so a body never waits on an outage.
* always: ``CHAOS_SIDE_LOG``, a JSON-lines file appended with ``O_APPEND`` (one
  ``write`` per line, so concurrent children never interleave). The SQLite run uses
  it alone; the PostgreSQL run uses it as the spool.

The worker imports this module with ``--app tests.chaos.tasks:app``; its DSN comes
from ``TASKTRAIL_DSN``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any

import tasktrail

app = tasktrail.App()

SIDE_DSN_ENV = "CHAOS_SIDE_DSN"
SIDE_LOG_ENV = "CHAOS_SIDE_LOG"

#: Short backoff: an attempt lost to a fault is tried again at once.
RETRY: dict[str, Any] = {
    "retry_delay": 0.05,
    "retry_backoff": 1.5,
    "retry_max_delay": 1.0,
    "retry_jitter": 0.25,
}
#: How long a body waits for the side database before it spools the row instead.
SIDE_TIMEOUT = 2
#: The memory hog stops growing here (far above the harness's OOM limit) and waits to
#: be killed, so a harness that failed to kill it cannot exhaust the machine.
HOG_CAP = 1536 * 1024 * 1024
HOG_CHUNK = 16 * 1024 * 1024

_side_conn: Any = None
_side_conn_pid = 0


def _append_line(path: str, record: dict[str, Any]) -> None:
    data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _side_connection() -> Any:
    """This process's own connection to the side database (opened after the fork)."""
    global _side_conn, _side_conn_pid
    if _side_conn is not None and _side_conn_pid == os.getpid() and not _side_conn.closed:
        return _side_conn
    import psycopg

    _side_conn = psycopg.connect(
        os.environ[SIDE_DSN_ENV],
        autocommit=True,
        connect_timeout=SIDE_TIMEOUT,
        application_name="chaos body",
        # A partitioned link shows as an error within this time, not as a hang.
        tcp_user_timeout=SIDE_TIMEOUT * 1000,
        options=f"-c statement_timeout={SIDE_TIMEOUT * 1000}",
    )
    _side_conn_pid = os.getpid()
    return _side_conn


def _drop_side_connection() -> None:
    global _side_conn
    if _side_conn is not None:
        with contextlib.suppress(Exception):
            _side_conn.close()
    _side_conn = None


def record(phase: str) -> None:
    """Write this execution's ``phase`` (start or end) row to the side log."""
    job = tasktrail.current_job()
    if job is None:
        raise RuntimeError("not running in a worker")
    row = {
        "job": job.job_id,
        "attempt": job.attempt,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "phase": phase,
        "at": time.time(),
    }
    if os.environ.get(SIDE_DSN_ENV):
        try:
            _side_connection().execute(
                "INSERT INTO chaos_side.executions (job_id, attempt, pid, ppid, phase, at)"
                " VALUES (%(job)s, %(attempt)s, %(pid)s, %(ppid)s, %(phase)s, %(at)s)",
                row,
            )
            return
        except Exception:
            _drop_side_connection()
    _append_line(os.environ[SIDE_LOG_ENV], row)


@app.task(name="chaos.work", retries=40, **RETRY)
def work(index: int, seconds: float, fail_first: bool = False) -> int:
    """An ordinary job: run for ``seconds``; with ``fail_first`` its first attempt raises."""
    record("start")
    job = tasktrail.current_job()
    if fail_first and job is not None and job.attempt == 1:
        record("end")
        raise RuntimeError("flaky on its first attempt, as designed")
    time.sleep(seconds)
    record("end")
    return index


@app.task(name="chaos.gather", retries=40, **RETRY)
def gather(index: int) -> int:
    """A fan-in job: enqueued to wait for a batch (``after=``, policy ``finished``), it
    reads their results; how many of them succeeded."""
    record("start")
    job = tasktrail.current_job()
    assert job is not None
    results = job.after_results()
    record("end")
    return sum(1 for result in results.values() if result is not None)


@app.task(name="chaos.hang", timeout=1.0, retries=1, **RETRY)
def hang(index: int) -> None:
    """A job that never returns: its timeout kills it, twice, and it ends failed."""
    record("start")
    while True:
        time.sleep(3600)


@app.task(name="chaos.hog", timeout=30.0, retries=1, **RETRY)
def hog(index: int) -> None:
    """A job that allocates memory until the harness, playing the OOM killer, SIGKILLs
    it; the timeout is only a safety net. Ends failed after its second attempt."""
    record("start")
    hoard = []
    held = 0
    while held < HOG_CAP:
        hoard.append(bytearray(b"\x01") * HOG_CHUNK)  # written, so resident
        held += HOG_CHUNK
        time.sleep(0.01)
    while True:
        time.sleep(3600)
