"""Concurrency limits in the Backend contract: at most ``lock_limit`` jobs of a lock key are
reserved or running at once, across every worker (a lock is the limit of one). Run
against every backend (the ``dsn`` fixture, which also checks every job's history)."""

from __future__ import annotations

import os
import random
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tasktrail.backends import Backend, JobFilter
from tasktrail.config import SqliteDsn, parse_dsn
from tasktrail.job import NewJob

from .helpers import (
    T0,
    at,
    enqueue,
    failed,
    kinds,
    must_get,
    new_job,
    query,
    run_forked,
    succeeded,
    worker_info,
)
from .targets import BackendTarget


def limited(key: str, limit: int, **options: Any) -> NewJob:
    return new_job("kpi.fetch", **options)._replace(lock_key=key, lock_limit=limit)


def ids_of(jobs: list[Any]) -> list[int]:
    return [job.id for job in jobs]


def test_at_most_the_limit_of_a_key_is_claimed_across_workers(backend: Backend) -> None:
    ids = enqueue(backend, [limited("api", 2) for _ in range(5)], now=T0)
    [free] = enqueue(backend, [new_job()], now=T0)
    one = backend.register_worker(worker_info("one"), now=T0)
    two = backend.register_worker(worker_info("two"), now=T0)
    assert ids_of(backend.reserve(one, [], 10, now=at(1))) == [*ids[:2], free]
    assert backend.reserve(two, [], 10, now=at(1)) == []
    for waiting in ids[2:]:
        assert kinds(backend, waiting) == ["enqueued"]  # it holds no slot anywhere
        assert must_get(backend, waiting).lock_limit == 2
    [running, _] = backend.mark_started(one, ids[:2], now=at(2))
    backend.finish(one, [succeeded(running, at(3))], now=at(3))
    # one place is free again: the next job of the key, in order, and only it
    assert ids_of(backend.reserve(two, [], 10, now=at(4))) == [ids[2]]
    assert backend.reserve(one, [], 10, now=at(4)) == []


def test_a_claim_fills_its_limit_past_jobs_waiting_for_their_key(backend: Backend) -> None:
    waiting = enqueue(backend, [limited("api", 2, priority=5) for _ in range(6)], now=T0)
    free = enqueue(backend, [new_job(), limited("other", 3), new_job()], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    assert ids_of(backend.reserve(worker, [], 4, now=at(1))) == [*waiting[:2], *free[:2]]
    assert ids_of(backend.reserve(worker, ["default"], 4, now=at(1))) == [free[2]]


def test_every_way_a_hold_ends_makes_room(backend: Backend) -> None:
    ids = enqueue(backend, [limited("k", 2, max_attempts=2) for _ in range(6)], now=T0)
    worker = backend.register_worker(worker_info(lease_seconds=5), now=T0)
    first = backend.reserve(worker, [], 10, now=at(1))
    assert ids_of(first) == ids[:2]
    backend.release(worker, [ids[0]], now=at(2), reason="shutdown")  # back in line, first
    assert ids_of(backend.reserve(worker, [], 10, now=at(3))) == [ids[0]]
    [a, _] = backend.mark_started(worker, ids[:2], now=at(4))
    backend.finish(worker, [failed(a, at(5), retry_at=at(50))], now=at(5))  # retried later
    assert ids_of(backend.reserve(worker, [], 10, now=at(6))) == [ids[2]]
    backend.cancel(ids[2], now=at(7), by="me")  # a reserved one cancelled
    assert ids_of(backend.reserve(worker, [], 10, now=at(8))) == [ids[3]]
    backend.recover_lost(now=at(60))  # the worker's lease lapsed: its jobs come back
    other = backend.register_worker(worker_info("other"), now=at(61))
    assert len(backend.reserve(other, [], 10, now=at(61))) == 2
    assert sum(job.status in ("reserved", "running") for job in _jobs(backend)) == 2


def _jobs(backend: Backend) -> list[Any]:
    return backend.list_jobs(JobFilter(limit=None))


def test_claims_never_hold_more_than_the_limit_across_processes(
    backend: Backend, dsn: str, backend_target: BackendTarget, tmp_path: Path
) -> None:
    limits = {"api:a": 3, "api:b": 2, "lock:c": 1}
    keys = sorted(limits)
    jobs = [limited(keys[i % 3], limits[keys[i % 3]]) if i % 5 else new_job() for i in range(120)]
    ids = enqueue(backend, jobs, now=T0)

    def claim_until_empty(index: int) -> list[int]:
        rng = random.Random(index)
        own = backend_target.open(dsn)
        try:
            worker = own.register_worker(worker_info(f"c{index}", pid=os.getpid()), now=T0)
            taken: list[int] = []
            active = ("queued", "reserved", "running")
            while True:
                claimed = own.reserve(worker, [], rng.randint(1, 5), now=at(1))
                if not claimed:
                    if not own.list_jobs(JobFilter(statuses=active, limit=1)):
                        break
                    continue  # the rest wait for keys other processes hold
                taken.extend(job.id for job in claimed)
                started = own.mark_started(worker, ids_of(claimed), now=at(2))
                outcomes = [succeeded(job, at(3)) for job in started]
                assert own.finish(worker, outcomes, now=at(3)) == []
            return taken
        finally:
            own.close()

    claims = run_forked(6, claim_until_empty, tmp_path)
    assert sorted(job_id for claim in claims for job_id in claim) == ids
    # From history, in the order it was written: never more holders of a key than allowed.
    key_of = {job.id: job.lock_key for job in _jobs(backend)}
    events = sorted(
        (event for job_id in ids for event in backend.list_events(job_id)), key=lambda e: e.id
    )
    holders: dict[str, set[int]] = {key: set() for key in keys}
    most = Counter[str]()
    for event in events:
        key = key_of[event.job_id]
        if key is None:
            continue
        if event.kind == "reserved":
            holders[key].add(event.job_id)
            most[key] = max(most[key], len(holders[key]))
        elif event.kind == "succeeded":
            holders[key].discard(event.job_id)
    assert all(most[key] <= limits[key] for key in keys), most
    assert most["lock:c"] == 1 and most["api:a"] >= 2  # the limits were reached, not just kept


def write(dsn: str, statement: str, params: tuple[Any, ...]) -> None:
    """Plain SQL that changes rows (``?`` placeholders), committed, as a racing claim or
    a person would."""
    parsed = parse_dsn(dsn)
    if isinstance(parsed, SqliteDsn):
        conn = sqlite3.connect(str(parsed.path))
        try:
            conn.execute(statement, params)
            conn.commit()
        finally:
            conn.close()
        return
    import psycopg

    with psycopg.connect(parsed.conninfo) as pg:
        pg.execute(f'SET search_path TO "{parsed.schema}"')
        pg.execute(statement.replace("?", "%s"), params)  # type: ignore[arg-type]


@pytest.mark.postgres
def test_the_database_refuses_a_claim_past_the_limit_whoever_makes_it(
    pg_backend: Backend, pg_dsn: str
) -> None:
    """On PostgreSQL, where workers claim at the same moment, the database itself
    refuses a claim past the limit (a trigger); SQLite has one writer at a time, and its
    claim, the one way in, keeps the limit."""
    backend, dsn = pg_backend, pg_dsn
    ids = enqueue(backend, [limited("api", 2) for _ in range(3)], now=T0)
    [lock_holder, lock_waiter] = enqueue(
        backend, [limited("lock", 1)._replace(lock_limit=None) for _ in range(2)], now=T0
    )
    worker = backend.register_worker(worker_info(), now=T0)
    assert ids_of(backend.reserve(worker, [], 10, now=at(1))) == [*ids[:2], lock_holder]
    # a claim that does not look first (a racing worker, or SQL by hand) changes nothing
    for job_id in (ids[2], lock_waiter):
        write(
            dsn, "UPDATE jobs SET status = 'running', worker_id = ? WHERE id = ?", (worker, job_id)
        )
        assert must_get(backend, job_id).status == "queued"
    [running, *_] = backend.mark_started(worker, ids[:2], now=at(2))
    backend.finish(worker, [succeeded(running, at(3))], now=at(3))
    assert ids_of(backend.reserve(worker, [], 10, now=at(4))) == [ids[2]]


def test_a_claim_whose_time_lags_starts_after_the_last_holder_ended(backend: Backend) -> None:
    # A worker reads its clock before its claim waits for the database, where the end
    # of the key's last holder may be written meanwhile: the next holder still starts,
    # in its history, when that one ended, never before (one holder at a time).
    ids = enqueue(backend, [limited("kpi:1", 1) for _ in range(2)], now=T0)
    [free] = enqueue(backend, [new_job()], now=T0)
    one = backend.register_worker(worker_info("one"), now=T0)
    two = backend.register_worker(worker_info("two"), now=T0)

    def start_now(worker: int, now: float) -> list[int]:
        claimed = backend.exchange(
            worker, outcomes=(), start_ids=(), claim=5, start_claimed=5, queues=[],
            now=at(now),
        )  # fmt: skip
        return ids_of(claimed.started)

    assert start_now(one, 1) == [ids[0], free]
    backend.finish(one, [succeeded(must_get(backend, ids[0]), at(5))], now=at(5))
    assert start_now(two, 3) == [ids[1]]  # its clock read at 3, before that end
    [started] = [e.at for e in backend.list_events(ids[1]) if e.kind == "started"]
    assert started == must_get(backend, ids[1]).started_at == at(5)
    [unlimited] = [e.at for e in backend.list_events(free) if e.kind == "started"]
    assert unlimited == at(1)  # a job of no key starts at the claim's own time


@pytest.mark.postgres
def test_maintain_lets_go_of_the_keys_nobody_held_for_an_hour(
    pg_backend: Backend, pg_dsn: str
) -> None:
    # PostgreSQL keeps a row per key (its held count, and its last end for the next
    # claim); a key nobody holds keeps it an hour, then maintain deletes it.
    backend = pg_backend
    ids = enqueue(backend, [limited(key, 1) for key in ("idle", "busy", "busy")], now=T0)
    worker = backend.register_worker(worker_info(lease_seconds=10_000), now=T0)
    assert ids_of(backend.reserve(worker, [], 5, now=at(1))) == ids[:2]
    [idle, _] = backend.mark_started(worker, ids[:2], now=at(2))
    backend.finish(worker, [succeeded(idle, at(3))], now=at(3))
    limits = "SELECT lock_key, held, freed_at FROM job_limits ORDER BY lock_key"
    assert query(pg_dsn, limits) == [("busy", 1, None), ("idle", 0, at(3))]
    backend.prune(older_than={}, now=at(3 + 3599))
    assert [key for key, *_ in query(pg_dsn, limits)] == ["busy", "idle"]
    backend.prune(older_than={}, now=at(3 + 3601))
    assert query(pg_dsn, limits) == [("busy", 1, None)]  # held: kept
    assert ids_of(backend.reserve(worker, [], 5, now=at(3602))) == []  # busy still holds
