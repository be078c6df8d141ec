"""Builders and checks shared by the backend contract suite."""

from __future__ import annotations

import json
import os
import select
import sqlite3
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from tasktrail import payload
from tasktrail.backends import Backend, JobFilter
from tasktrail.config import SqliteDsn, parse_dsn
from tasktrail.job import Job, NewJob, Outcome, Ref, WorkerInfo
from tasktrail.lifecycle import check_history

#: The suite's "now": far from the real clock, so a backend that reads the server's
#: clock instead of the ``now`` it is given shows up at once.
T0 = datetime(2031, 3, 4, 5, 6, 7, 123456, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    """``T0`` plus some seconds."""
    return T0 + timedelta(seconds=seconds)


def new_job(
    task: str = "tests.task",
    *args: Any,
    queue: str = "default",
    priority: int = 0,
    ref: tuple[str, str] | None = None,
    run_at: datetime | None = None,
    max_attempts: int = 1,
    timeout: float | None = None,
    **kwargs: Any,
) -> NewJob:
    return NewJob(
        task=task,
        queue=queue,
        args_json=payload.encode(list(args), "args"),
        kwargs_json=payload.encode(kwargs, "kwargs"),
        ref=Ref.of(ref),
        priority=priority,
        max_attempts=max_attempts,
        timeout=timeout,
        run_at=run_at,
    )


def enqueue(backend: Backend, jobs: list[NewJob], **options: Any) -> list[int]:
    """The ids of ``backend.enqueue(jobs)``, all of which must be new jobs."""
    enqueued = backend.enqueue(jobs, **options)
    assert all(item.created for item in enqueued)
    return [item.id for item in enqueued]


def worker_info(
    name: str = "worker-a",
    *,
    host: str = "host-a",
    pid: int = 4242,
    queues: tuple[str, ...] = (),
    lease_seconds: float = 30.0,
) -> WorkerInfo:
    return WorkerInfo(
        name=name,
        host=host,
        pid=pid,
        processes=2,
        reserve=4,
        queues=queues,
        lease_seconds=lease_seconds,
    )


def succeeded(job: Job, finished_at: datetime, result: Any = None) -> Outcome:
    return Outcome(
        job.id,
        job.attempts,
        "succeeded",
        finished_at,
        result_json=payload.encode(result, "result"),
        detail={"runtime": 0.5},
    )


def failed(
    job: Job, finished_at: datetime, retry_at: datetime | None = None, kind: str = "failed"
) -> Outcome:
    return Outcome(
        job.id,
        job.attempts,
        kind,  # type: ignore[arg-type]
        finished_at,
        error=f"{kind} on attempt {job.attempts}",
        retry_at=retry_at,
        detail={"runtime": 0.25},
    )


def start(backend: Backend, worker_id: int, job_id: int, now: datetime) -> Job:
    """Reserve exactly ``job_id`` (it must be the only claimable job) and start it."""
    [reserved] = backend.reserve(worker_id, [], 1, now=now)
    assert reserved.id == job_id
    [running] = backend.mark_started(worker_id, [job_id], now=now)
    return running


def must_get(backend: Backend, job_id: int) -> Job:
    job = backend.get_job(job_id)
    assert job is not None, f"job {job_id} is missing"
    return job


def kinds(backend: Backend, job_id: int) -> list[str]:
    return [event.kind for event in backend.list_events(job_id)]


def history_problems(backend: Backend) -> dict[int, list[str]]:
    """Every job whose history is not a valid lifecycle path, with the problems."""
    problems = {}
    for job in backend.list_jobs(JobFilter(limit=None)):
        found = check_history(backend.list_events(job.id), job.status)
        if found:
            problems[job.id] = found
    return problems


def run_forked(
    count: int, target: Callable[[int], Any], workdir: Path, deadline_seconds: float = 60
) -> list[Any]:
    """Run ``target(index)`` in ``count`` forked processes released at the same moment.

    Each child opens its own connections; its JSON result comes back through a file.
    A child that raises makes the call fail with its traceback; one still running at the
    deadline is killed.
    """
    gate_read, gate_write = os.pipe()
    pids = []
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork in a threaded process; a connection pool may have
        # threads, but the children never touch the parent's connections.
        warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
        for index in range(count):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                code = 1
                try:
                    os.close(gate_write)
                    os.read(gate_read, 1)  # returns at EOF, when the parent opens the gate
                    result = target(index)
                    (workdir / f"result-{index}.json").write_text(json.dumps(result))
                    code = 0
                except BaseException:
                    (workdir / f"error-{index}.txt").write_text(traceback.format_exc())
                    traceback.print_exc(file=sys.stderr)
                finally:
                    os._exit(code)
            pids.append(pid)
    os.close(gate_read)
    os.close(gate_write)  # EOF on the gate: every child starts at once

    codes = _wait_for_children(pids, deadline_seconds)
    errors = [
        (workdir / f"error-{index}.txt").read_text()
        for index in range(count)
        if (workdir / f"error-{index}.txt").exists()
    ]
    assert codes == [0] * count, f"child exit codes {codes}; errors: {errors}"
    return [json.loads((workdir / f"result-{index}.json").read_text()) for index in range(count)]


def _wait_for_children(pids: list[int], deadline_seconds: float) -> list[int]:
    """Exit codes of the children, killing any still running at the deadline."""
    deadline = time.monotonic() + deadline_seconds
    codes: dict[int, int] = {}
    while True:
        for pid in pids:
            if pid not in codes:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    codes[pid] = os.waitstatus_to_exitcode(status)
        if len(codes) == len(pids):
            break
        if time.monotonic() > deadline:
            for pid in pids:
                if pid not in codes:
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    codes[pid] = -9
            break
        time.sleep(0.01)
    return [codes[pid] for pid in pids]


def query(dsn: str, statement: str) -> list[tuple[Any, ...]]:
    """Rows of plain SQL on the backend's own tables and views, as a user would run it
    (``psql`` with the schema on the search path, or ``sqlite3``)."""
    parsed = parse_dsn(dsn)
    if isinstance(parsed, SqliteDsn):
        conn = sqlite3.connect(str(parsed.path))
        try:
            return conn.execute(statement).fetchall()
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(parsed.conninfo) as pg:
        pg.execute(f'SET search_path TO "{parsed.schema}"')
        return pg.execute(statement).fetchall()  # type: ignore[arg-type]


def readable(fd: int, timeout: float) -> bool:
    """Whether ``fd`` becomes readable within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            return True
        if time.monotonic() >= deadline:
            return False
