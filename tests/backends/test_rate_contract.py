"""Rate limits in the Backend contract: at most ``rate_limit`` jobs of a rate key start
within any ``rate_window`` seconds, across every worker. Run against every backend (the
``dsn`` fixture, which also checks every job's history); time is a parameter."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tasktrail.backends import Backend
from tasktrail.job import NewJob

from .helpers import T0, at, enqueue, kinds, must_get, new_job, run_forked, worker_info
from .targets import BackendTarget
from .test_limits_contract import write


def rated(key: str, limit: int, window: float, **options: Any) -> NewJob:
    return new_job("api.call", **options)._replace(
        rate_key=key, rate_limit=limit, rate_window=window
    )


def start_now(backend: Backend, worker: int, count: int, now_s: float) -> list[int]:
    claimed = backend.exchange(
        worker, outcomes=(), start_ids=(), claim=count, start_claimed=count, queues=[],
        now=at(now_s),
    )  # fmt: skip
    assert claimed.reserved == []
    return [job.id for job in claimed.started]


def test_at_most_the_rate_starts_within_its_window(backend: Backend) -> None:
    ids = enqueue(backend, [rated("api", 3, 10.0) for _ in range(5)], now=T0)
    [free] = enqueue(backend, [new_job()], now=T0)
    one = backend.register_worker(worker_info("one"), now=T0)
    two = backend.register_worker(worker_info("two"), now=T0)
    assert start_now(backend, one, 10, 1) == [*ids[:3], free]
    assert start_now(backend, two, 10, 5) == []  # the window of 10 s still holds three
    for waiting in ids[3:]:
        assert kinds(backend, waiting) == ["enqueued"]
    assert start_now(backend, two, 10, 11.5) == ids[3:]  # those of t=1 are out of it
    job = must_get(backend, ids[3])
    assert (job.rate_key, job.rate_limit, job.rate_window) == ("api", 3, 10.0)


def test_a_job_under_a_rate_is_never_claimed_to_start_later(backend: Backend) -> None:
    [job_id] = enqueue(backend, [rated("api", 5, 1.0)], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    assert backend.reserve(worker, [], 10, now=at(1)) == []  # reserved: not started
    assert start_now(backend, worker, 1, 2) == [job_id]


@pytest.mark.postgres
def test_the_database_refuses_a_start_past_the_rate_whoever_makes_it(
    pg_backend: Backend, pg_dsn: str
) -> None:
    """On PostgreSQL, where workers claim at the same moment, the database itself
    refuses a claim past the limit (a trigger); SQLite has one writer at a time, and its
    claim, the one way in, keeps the limit."""
    backend, dsn = pg_backend, pg_dsn
    ids = enqueue(backend, [rated("api", 1, 60.0) for _ in range(2)], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    assert start_now(backend, worker, 5, 1) == [ids[0]]
    write(
        dsn,
        "UPDATE jobs SET status = 'running', worker_id = ?, started_at = ? WHERE id = ?",
        (worker, at(2).isoformat() if "sqlite" in dsn else at(2), ids[1]),
    )
    assert must_get(backend, ids[1]).status == "queued"


def test_starts_in_many_processes_at_once_stay_within_the_rate(
    backend: Backend, dsn: str, backend_target: BackendTarget, tmp_path: Path
) -> None:
    ids = enqueue(backend, [rated("api", 4, 30.0) for _ in range(20)], now=T0)

    def claim(index: int) -> list[int]:
        own = backend_target.open(dsn)
        try:
            worker = own.register_worker(worker_info(f"c{index}", pid=os.getpid()), now=T0)
            return [job_id for _ in range(5) for job_id in start_now(own, worker, 3, 1)]
        finally:
            own.close()

    started = [job_id for claimed in run_forked(6, claim, tmp_path) for job_id in claimed]
    # four in the window and no more (not always the first four: on PostgreSQL a claim
    # passes over a job another claim has locked, which that one's rate then refuses)
    assert len(started) == len(set(started)) == 4 and set(started) <= set(ids)


def test_a_worker_whose_clock_lags_still_counts_the_starts_of_its_window(
    backend: Backend,
) -> None:
    # Workers pass their own "now"; one may claim with an earlier time than a claim
    # already written (its clock, or a wait for the database): its window is still whole.
    ids = enqueue(backend, [rated("api", 1, 1.0, queue=f"q{i}") for i in range(3)], now=T0)
    workers = [backend.register_worker(worker_info(f"w{i}"), now=T0) for i in range(3)]

    def start_in(index: int, now_s: float) -> list[int]:
        claimed = backend.exchange(
            workers[index], outcomes=(), start_ids=(), claim=1, start_claimed=1,
            queues=[f"q{index}"], now=at(now_s),
        )  # fmt: skip
        return [job.id for job in claimed.started]

    assert start_in(0, 10.0) == [ids[0]]
    assert start_in(1, 12.0) == [ids[1]]  # a window later
    assert start_in(2, 10.5) == []  # within a second of the first start
    assert start_in(2, 13.5) == [ids[2]]


def test_a_window_is_kept_to_the_microsecond_as_the_history_is(backend: Backend) -> None:
    # A start 0.9996 s after another is within its second of 1 s, as the history's
    # timestamps (to the microsecond) show it; one 1.0004 s after it is not. (SQLite's
    # julianday() rounds to the millisecond, which let the first through.)
    ids = enqueue(backend, [rated("api", 1, 1.0) for _ in range(2)], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    first = 10.376544  # T0 + first: at half a second
    assert start_now(backend, worker, 1, first) == [ids[0]]
    for within in (0.9995, 0.9999, 0.99999):
        assert start_now(backend, worker, 1, first + within) == []
    assert start_now(backend, worker, 1, first + 1.0004) == [ids[1]]
    starts = [e.at for job_id in ids for e in backend.list_events(job_id) if e.kind == "started"]
    assert (starts[1] - starts[0]).total_seconds() == pytest.approx(1.0004, abs=1e-6)
