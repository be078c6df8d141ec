"""The Backend contract (tasktrail.backends.base), run against every backend.

Every test gets a new database through the ``dsn`` fixture (SQLite and PostgreSQL) and
controls time by passing ``now``; nothing sleeps. After each test the ``backend``
fixture checks that every job's history is a valid lifecycle path ending in its status.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from dataclasses import replace
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tasktrail.backends import Backend, JobFilter, RecoveredJob
from tasktrail.config import SqliteDsn, parse_dsn
from tasktrail.errors import InvalidPayload, InvalidTransition, JobNotFound
from tasktrail.job import Job, NewJob, Outcome, Ref
from tasktrail.schedule import Every, ScheduleDef, ScheduleRecord

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
    start,
    succeeded,
    worker_info,
)
from .targets import BackendTarget

NO_SUCH_JOB = 987_654_321
NO_SUCH_WORKER = 987_654_321


# -- set-up -----------------------------------------------------------------------------


def test_setup_is_idempotent_and_shared(
    backend: Backend, dsn: str, backend_target: BackendTarget
) -> None:
    [job_id] = enqueue(backend, [new_job()], now=T0)
    backend.setup()
    other = backend_target.open(dsn)
    try:
        other.setup()
        assert must_get(other, job_id).status == "queued"
    finally:
        other.close()
    assert must_get(backend, job_id).status == "queued"


# -- enqueue ----------------------------------------------------------------------------


def test_enqueue_stores_every_field_and_an_enqueued_event(backend: Backend) -> None:
    ids = enqueue(backend,
        [
            new_job("app.refresh", 42, queue="web", priority=5, ref=("website", "42"),
                    max_attempts=3, timeout=2.5, full=True),
            new_job("app.other"),
            new_job("app.later", run_at=at(3600)),
        ],
        now=T0,
    )  # fmt: skip
    assert len(ids) == 3
    assert ids == sorted(ids)
    assert len(set(ids)) == 3

    first = must_get(backend, ids[0])
    assert (first.id, first.task, first.queue, first.status) == (
        ids[0],
        "app.refresh",
        "web",
        "queued",
    )
    assert first.ref == Ref("website", "42")
    assert (first.priority, first.args, first.kwargs) == (5, [42], {"full": True})
    assert (first.attempts, first.max_attempts, first.timeout) == (0, 3, 2.5)
    assert first.run_at == T0  # no run_at: as soon as possible, i.e. now
    assert first.created_at == T0
    assert (first.started_at, first.finished_at, first.worker_id, first.worker_name) == (None,) * 4
    assert (first.result, first.error) == (None, None)

    second = must_get(backend, ids[1])
    assert (second.ref, second.priority, second.args, second.kwargs) == (None, 0, [], {})
    assert (second.max_attempts, second.timeout) == (1, None)
    assert must_get(backend, ids[2]).run_at == at(3600)

    for job_id in ids:
        [event] = backend.list_events(job_id)
        assert (event.job_id, event.kind, event.attempt, event.at) == (job_id, "enqueued", 0, T0)
        assert (event.worker_id, event.worker_name, event.host, event.pid) == (None,) * 4


def test_enqueue_nothing(backend: Backend) -> None:
    assert backend.enqueue([], now=T0) == []
    assert backend.list_jobs(JobFilter(limit=None)) == []


def test_later_enqueues_get_larger_ids(backend: Backend) -> None:
    first = enqueue(backend, [new_job(), new_job()], now=T0)
    second = enqueue(backend, [new_job()], now=at(1))
    assert max(first) < second[0]


def test_enqueue_is_all_or_nothing(backend: Backend) -> None:
    good = new_job("app.good")
    too_big = new_job("app.bad", priority=2**70)  # no database integer column holds this
    with pytest.raises(Exception):  # noqa: B017 - the driver's own error; only atomicity matters
        enqueue(backend, [good, too_big], now=T0)
    assert backend.list_jobs(JobFilter(limit=None)) == []
    [job_id] = enqueue(backend, [good], now=T0)
    assert kinds(backend, job_id) == ["enqueued"]


def test_arguments_and_results_round_trip(backend: Backend) -> None:
    text = 'Zoë 日本語 🎉 tab\t newline\n quote" backslash\\ \\u0000 \x01 end'
    args = [text, 2**62, -(2**62), 2.5, 0.1, True, None, [[[]]], {"": {"k": [1, "2"]}}]
    kwargs = {"ünïcode": text, "x\x01y": 1}
    [job_id] = enqueue(backend, [new_job("app.data", *args, **kwargs)], now=T0)
    job = must_get(backend, job_id)
    assert job.args == args
    assert job.kwargs == kwargs

    worker = backend.register_worker(worker_info(), now=T0)
    running = start(backend, worker, job_id, at(1))
    assert running.args == args
    assert running.kwargs == kwargs
    result = {"text": text, "values": args}
    assert backend.finish(worker, [succeeded(running, at(2), result)], now=at(2)) == []
    assert must_get(backend, job_id).result == result


def test_floats_keep_their_type_and_value(backend: Backend) -> None:
    # JSON writes large floats with an exponent (1e+20); a store that normalises numbers
    # must not hand the task an int, or a different value, instead.
    values = [1e20, 1.5e300, -2.5e-300, 1.0, 123456789.123456789, 2**53 + 1]
    [job_id] = enqueue(backend, [new_job("app.floats", *values)], now=T0)
    args = must_get(backend, job_id).args
    assert args == values
    assert [type(v) for v in args] == [type(v) for v in values]


def test_nul_in_arguments_is_kept_or_refused_before_anything_is_stored(
    backend: Backend,
) -> None:
    # payload.encode accepts NUL; a database that cannot store it must refuse the whole
    # batch with InvalidPayload (not a driver error), not store it changed.
    batch = [new_job("app.fine"), new_job("app.nul", "a\x00b", key="c\x00d")]
    try:
        ids = enqueue(backend, batch, now=T0)
    except InvalidPayload as exc:
        assert "NUL" in str(exc)
        assert backend.list_jobs(JobFilter(limit=None)) == []
    else:
        job = must_get(backend, ids[1])
        assert (job.args, job.kwargs) == (["a\x00b"], {"key": "c\x00d"})


def test_a_result_the_database_cannot_store_still_ends_the_job(backend: Backend) -> None:
    # A task may return any JSON payload.encode accepts, NUL included. finish() records a
    # batch at once, so one such result must not stop the others from being recorded.
    nul_id, other_id = enqueue(backend, [new_job(), new_job()], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    backend.reserve(worker, [], 2, now=at(1))
    jobs = {job.id: job for job in backend.mark_started(worker, [nul_id, other_id], now=at(1))}
    outcomes = [succeeded(jobs[nul_id], at(2), "a\x00b"), succeeded(jobs[other_id], at(2), 1)]
    assert backend.finish(worker, outcomes, now=at(2)) == []
    assert must_get(backend, other_id).status == "succeeded"
    job = must_get(backend, nul_id)
    if job.status == "succeeded":
        assert job.result == "a\x00b"
    else:  # recorded as a failure that says why
        assert job.status == "failed"
        assert job.error is not None
        assert "NUL" in job.error


def test_null_and_scalar_results(backend: Backend) -> None:
    worker = backend.register_worker(worker_info(), now=T0)
    for result in (None, 0, "", [], False):
        [job_id] = enqueue(backend, [new_job()], now=T0)
        running = start(backend, worker, job_id, at(1))
        backend.finish(worker, [succeeded(running, at(2), result)], now=at(2))
        assert must_get(backend, job_id).result == result


def test_times_in_any_timezone_are_stored_as_the_same_instant_in_utc(backend: Backend) -> None:
    tokyo = timezone(timedelta(hours=9))
    [job_id] = enqueue(
        backend, [new_job(run_at=at(60).astimezone(tokyo))], now=T0.astimezone(tokyo)
    )
    job = must_get(backend, job_id)
    assert (job.created_at, job.run_at) == (T0, at(60))
    assert job.created_at.utcoffset() == job.run_at.utcoffset() == timedelta(0)
    worker = backend.register_worker(worker_info(), now=T0)
    new_york = timezone(timedelta(hours=-5))
    assert backend.reserve(worker, [], 1, now=at(59).astimezone(new_york)) == []
    assert len(backend.reserve(worker, [], 1, now=at(60).astimezone(new_york))) == 1
    assert backend.list_events(job_id)[-1].at.utcoffset() == timedelta(0)


class CallerTransaction:
    """A connection of the caller's own, on the database the backend uses."""

    def __init__(self, dsn: str) -> None:
        parsed = parse_dsn(dsn)
        if isinstance(parsed, SqliteDsn):
            self.connection: Any = sqlite3.connect(str(parsed.path), isolation_level=None)
            self.connection.execute("BEGIN")
        else:
            import psycopg

            self.connection = psycopg.connect(parsed.conninfo)  # a transaction starts on use

    def end(self, commit: bool) -> None:
        if isinstance(self.connection, sqlite3.Connection):
            self.connection.execute("COMMIT" if commit else "ROLLBACK")
        elif commit:
            self.connection.commit()
        else:
            self.connection.rollback()
        self.connection.close()


#: Batches the backends write differently: one job, a few (one statement), many (COPY
#: on PostgreSQL), and unique ones (several statements).
BATCHES = {
    "one": lambda: [new_job("app.in_tx")],
    "few": lambda: [new_job("app.in_tx", n) for n in range(3)],
    "many": lambda: [new_job("app.in_tx", n) for n in range(150)],
    "unique": lambda: [new_job("app.in_tx", n)._replace(unique_key=f"k{n}") for n in range(3)],
}


@pytest.mark.parametrize("batch", list(BATCHES))
@pytest.mark.parametrize("commit", [True, False])
def test_enqueue_in_the_callers_transaction(
    backend: Backend, sql_dsn: str, commit: bool, batch: str
) -> None:
    # The caller's transaction is begun by our first statement (psycopg, not in
    # autocommit), or was begun before (sqlite3): either way it is the caller's to end.
    caller = CallerTransaction(sql_dsn)
    jobs = BATCHES[batch]()
    try:
        ids = enqueue(backend, jobs, now=T0, connection=caller.connection)
        assert len(set(ids)) == len(jobs)
        assert backend.get_job(ids[0]) is None  # not visible before the caller commits
    finally:
        caller.end(commit)
    for job_id, job in zip(ids, jobs, strict=True):
        if commit:
            assert must_get(backend, job_id).args == json.loads(job.args_json)
            assert kinds(backend, job_id) == ["enqueued"]
        else:
            assert backend.get_job(job_id) is None
            assert backend.list_events(job_id) == []


# -- reserve ----------------------------------------------------------------------------


def test_reserve_order_is_priority_then_run_at_then_id(backend: Backend) -> None:
    ids = enqueue(
        backend,
        [
            new_job("j0", priority=0, run_at=at(-10)),
            new_job("j1", priority=5, run_at=at(-1)),
            new_job("j2", priority=5, run_at=at(-5)),
            new_job("j3", priority=-3, run_at=at(-100)),
            new_job("j4", priority=5, run_at=at(-5)),
            new_job("j5", priority=0, run_at=at(-10)),
            new_job("j6", priority=32767),
        ],
        now=T0,
    )
    expected = [ids[i] for i in (6, 2, 4, 1, 0, 5, 3)]
    worker = backend.register_worker(worker_info(), now=T0)
    assert [job.id for job in backend.reserve(worker, [], 100, now=T0)] == expected


def test_reserve_one_at_a_time_follows_the_same_order(backend: Backend) -> None:
    ids = enqueue(
        backend,
        [new_job(priority=p, run_at=at(-r)) for p, r in [(1, 1), (2, 1), (1, 2), (2, 1)]],
        now=T0,
    )
    worker = backend.register_worker(worker_info(), now=T0)
    taken = []
    for _ in ids:
        [job] = backend.reserve(worker, [], 1, now=T0)
        taken.append(job.id)
    assert taken == [ids[1], ids[3], ids[2], ids[0]]
    assert backend.reserve(worker, [], 1, now=T0) == []


def test_reserve_marks_jobs_reserved_with_an_event(backend: Backend) -> None:
    [job_id] = enqueue(backend, [new_job("app.x", 1, ref=("website", "7"))], now=T0)
    worker = backend.register_worker(worker_info("w-1", host="box", pid=77), now=T0)
    [job] = backend.reserve(worker, [], 10, now=at(1))
    assert (job.id, job.status, job.worker_id, job.attempts) == (job_id, "reserved", worker, 0)
    assert (job.task, job.args, job.ref) == ("app.x", [1], Ref("website", "7"))
    stored = must_get(backend, job_id)
    assert (stored.status, stored.worker_id, stored.worker_name) == ("reserved", worker, "w-1")
    assert stored.attempts == 0
    enqueued, reserved = backend.list_events(job_id)
    assert enqueued.kind == "enqueued"
    assert (reserved.kind, reserved.attempt, reserved.at) == ("reserved", 0, at(1))
    assert (reserved.worker_id, reserved.worker_name, reserved.host, reserved.pid) == (
        worker,
        "w-1",
        "box",
        77,
    )


def test_future_run_at_is_not_claimable_until_it_comes(backend: Backend) -> None:
    [later] = enqueue(backend, [new_job(run_at=at(60))], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    assert backend.reserve(worker, [], 10, now=T0) == []
    assert backend.reserve(worker, [], 10, now=at(59.999999)) == []
    assert must_get(backend, later).status == "queued"
    assert kinds(backend, later) == ["enqueued"]
    assert [job.id for job in backend.reserve(worker, [], 10, now=at(60))] == [later]


def test_a_due_job_is_taken_before_a_higher_priority_future_one(backend: Backend) -> None:
    future, due = enqueue(
        backend, [new_job(priority=10, run_at=at(30)), new_job(priority=0)], now=T0
    )
    worker = backend.register_worker(worker_info(), now=T0)
    assert [job.id for job in backend.reserve(worker, [], 10, now=at(1))] == [due]
    assert [job.id for job in backend.reserve(worker, [], 10, now=at(30))] == [future]


def test_reserve_filters_by_queue(backend: Backend) -> None:
    a1, b1, c1, a2, b2 = enqueue(
        backend,
        [
            new_job(queue="a"),
            new_job(queue="b", priority=1),
            new_job(queue="c", priority=9),
            new_job(queue="a", priority=2),
            new_job(queue="b", run_at=at(-1)),
        ],
        now=T0,
    )
    worker = backend.register_worker(worker_info(), now=T0)
    assert backend.reserve(worker, ["nowhere"], 10, now=T0) == []
    assert [job.id for job in backend.reserve(worker, ["a"], 10, now=T0)] == [a2, a1]
    # Several queues: one order across them, not queue by queue.
    assert [job.id for job in backend.reserve(worker, ["b", "c"], 10, now=T0)] == [c1, b1, b2]


def test_reserve_with_no_queues_takes_from_every_queue(backend: Backend) -> None:
    ids = enqueue(backend, [new_job(queue=q) for q in ("a", "b", "c")], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    assert [job.id for job in backend.reserve(worker, [], 10, now=T0)] == ids


def test_reserve_from_every_queue_keeps_one_order_across_them(backend: Backend) -> None:
    a1, b1, c1, a2, _z1, b2 = enqueue(
        backend,
        [
            new_job(queue="a"),
            new_job(queue="b", priority=1),
            new_job(queue="c", priority=9),
            new_job(queue="a", priority=2),
            new_job(queue="z", run_at=at(60)),  # a queue with only a job not yet due
            new_job(queue="b", run_at=at(-1)),
        ],
        now=T0,
    )
    worker = backend.register_worker(worker_info(), now=T0)
    assert [job.id for job in backend.reserve(worker, [], 2, now=T0)] == [c1, a2]
    assert [job.id for job in backend.reserve(worker, [], 10, now=T0)] == [b1, b2, a1]
    assert backend.reserve(worker, [], 10, now=T0) == []


def test_reserve_respects_the_limit(backend: Backend) -> None:
    ids = enqueue(backend, [new_job() for _ in range(5)], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    assert backend.reserve(worker, [], 0, now=T0) == []
    assert [job.id for job in backend.reserve(worker, [], 2, now=T0)] == ids[:2]
    assert [job.id for job in backend.reserve(worker, ["default"], 2, now=T0)] == ids[2:4]
    assert [job.id for job in backend.reserve(worker, [], 2, now=T0)] == ids[4:]
    assert backend.reserve(worker, [], 2, now=T0) == []


def test_reserved_jobs_are_not_handed_out_again(backend: Backend) -> None:
    ids = enqueue(backend, [new_job() for _ in range(3)], now=T0)
    first = backend.register_worker(worker_info("first"), now=T0)
    second = backend.register_worker(worker_info("second"), now=T0)
    assert [job.id for job in backend.reserve(first, [], 2, now=T0)] == ids[:2]
    assert [job.id for job in backend.reserve(second, [], 10, now=T0)] == ids[2:]
    assert backend.reserve(first, [], 10, now=T0) == []
    assert [must_get(backend, i).worker_id for i in ids] == [first, first, second]


def test_unknown_stopped_or_lost_workers_get_nothing(backend: Backend) -> None:
    [job_id] = enqueue(backend, [new_job()], now=T0)
    stopped = backend.register_worker(worker_info("stopped"), now=T0)
    backend.unregister_worker(stopped, now=T0)
    lost = backend.register_worker(worker_info("lost", lease_seconds=5), now=T0)
    assert backend.recover_lost(now=at(6)) == []  # it held nothing
    assert [w.status for w in backend.list_workers(include_stopped=True)] == ["lost", "stopped"]

    for worker in (NO_SUCH_WORKER, stopped, lost):
        assert backend.reserve(worker, [], 10, now=at(10)) == []
    job = must_get(backend, job_id)
    assert (job.status, job.worker_id) == ("queued", None)
    assert kinds(backend, job_id) == ["enqueued"]


def test_claims_are_atomic_across_processes(
    backend: Backend, dsn: str, backend_target: BackendTarget, tmp_path: Path
) -> None:
    """Several forked processes, each with its own connection, drain one pool of jobs."""
    job_count, process_count = 240, 6
    ids = enqueue(
        backend,
        [new_job(priority=i % 3, queue=("a", "b")[i % 2]) for i in range(job_count)],
        now=T0,
    )

    def claim_until_empty(index: int) -> dict[str, object]:
        rng = random.Random(index)
        own = backend_target.open(dsn)
        try:
            info = worker_info(f"claimer-{index}", pid=os.getpid())
            worker = own.register_worker(info, now=T0)
            queues = [[], ["a"], ["b"], ["a", "b"]][index % 4]
            taken: list[int] = []
            while True:
                jobs = own.reserve(worker, queues, rng.randint(1, 4), now=at(1))
                if not jobs and queues:
                    queues = []  # its own queues are empty: help with the rest
                    continue
                if not jobs:
                    break
                if not taken:
                    # Hold the first batch until every process has one: then they all claim
                    # at once. (Without this, the first to open its backend could drain
                    # every job alone while SQLite's busy handler kept the others asleep.)
                    (tmp_path / f"claimed-{index}").touch()
                    deadline = time.monotonic() + 30
                    while len(list(tmp_path.glob("claimed-*"))) < process_count:
                        assert time.monotonic() < deadline, "the others claimed nothing"
                        time.sleep(0.002)
                taken.extend(job.id for job in jobs)
                started = own.mark_started(worker, [job.id for job in jobs], now=at(2))
                outcomes = [succeeded(job, at(3)) for job in started]
                assert own.finish(worker, outcomes, now=at(3)) == []
            own.unregister_worker(worker, now=at(4))
        finally:
            own.close()
        return {"worker": worker, "ids": taken}

    claims = run_forked(process_count, claim_until_empty, tmp_path)
    taken = [job_id for claim in claims for job_id in claim["ids"]]
    assert len(taken) == len(set(taken)), "a job was handed to two workers"
    assert sorted(taken) == ids
    assert all(claim["ids"] for claim in claims), "a process claimed nothing"
    for claim in claims:
        for job_id in claim["ids"]:
            job = must_get(backend, job_id)
            assert (job.status, job.worker_id, job.attempts) == ("succeeded", claim["worker"], 1)
            assert kinds(backend, job_id).count("reserved") == 1


def test_concurrent_recoveries_take_each_job_back_once(
    backend: Backend, dsn: str, backend_target: BackendTarget, tmp_path: Path
) -> None:
    ids = enqueue(backend, [new_job(max_attempts=2) for _ in range(60)], now=T0)
    dead = [
        backend.register_worker(worker_info(f"dead-{n}", lease_seconds=5), now=T0) for n in range(3)
    ]
    for index, worker in enumerate(dead):
        held = backend.reserve(worker, [], 20, now=at(1))
        if index != 1:  # the middle worker's jobs stay reserved, the others' run
            backend.mark_started(worker, [job.id for job in held], now=at(1))

    def recover(_index: int) -> list[list[object]]:
        own = backend_target.open(dsn)
        try:
            return [
                [r.job_id, r.worker_id, r.previous_status, r.new_status]
                for r in own.recover_lost(now=at(10))
            ]
        finally:
            own.close()

    results = run_forked(4, recover, tmp_path)
    recovered = [tuple(item) for result in results for item in result]
    assert sorted(r[0] for r in recovered) == ids  # each job exactly once
    for job_id in ids:
        assert kinds(backend, job_id).count("lost") == 1
        assert must_get(backend, job_id).status == "queued"
    assert {w.status for w in backend.list_workers(include_stopped=True)} == {"lost"}


# -- mark_started -----------------------------------------------------------------------


def test_mark_started_counts_the_attempt(backend: Backend) -> None:
    ids = enqueue(backend, [new_job(max_attempts=2), new_job()], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    backend.reserve(worker, [], 10, now=at(1))
    started = backend.mark_started(worker, ids, now=at(2))
    assert sorted(job.id for job in started) == ids
    for job in started:
        assert (job.status, job.attempts, job.worker_id) == ("running", 1, worker)
    for job_id in ids:
        stored = must_get(backend, job_id)
        assert (stored.status, stored.attempts, stored.started_at) == ("running", 1, at(2))
        event = backend.list_events(job_id)[-1]
        assert (event.kind, event.attempt, event.worker_id, event.at) == (
            "started",
            1,
            worker,
            at(2),
        )


def test_mark_started_is_fenced_on_the_worker(backend: Backend) -> None:
    mine, queued = enqueue(backend, [new_job(), new_job(run_at=at(100))], now=T0)
    owner = backend.register_worker(worker_info("owner"), now=T0)
    other = backend.register_worker(worker_info("other"), now=T0)
    backend.reserve(owner, [], 10, now=at(1))
    before = must_get(backend, mine)

    assert backend.mark_started(other, [mine], now=at(2)) == []
    assert backend.mark_started(owner, [queued, NO_SUCH_JOB], now=at(2)) == []
    assert backend.mark_started(owner, [], now=at(2)) == []
    assert must_get(backend, mine) == before
    assert must_get(backend, queued).status == "queued"

    [job] = backend.mark_started(owner, [mine, queued], now=at(3))
    assert job.id == mine
    # Once running, it is not started (and counted) again.
    assert backend.mark_started(owner, [mine], now=at(4)) == []
    assert must_get(backend, mine).attempts == 1
    assert kinds(backend, mine) == ["enqueued", "reserved", "started"]


# -- finish -----------------------------------------------------------------------------


def test_finish_succeeded(backend: Backend) -> None:
    [job_id] = enqueue(backend, [new_job()], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    running = start(backend, worker, job_id, at(1))
    assert backend.finish(worker, [succeeded(running, at(3), {"n": 3})], now=at(4)) == []
    job = must_get(backend, job_id)
    assert (job.status, job.result, job.error) == ("succeeded", {"n": 3}, None)
    assert (job.started_at, job.finished_at, job.attempts) == (at(1), at(3), 1)
    assert job.is_final
    event = backend.list_events(job_id)[-1]
    assert (event.kind, event.attempt, event.worker_id, event.at) == ("succeeded", 1, worker, at(3))
    assert event.detail["runtime"] == 0.5


def test_finish_failed_final(backend: Backend) -> None:
    [job_id] = enqueue(backend, [new_job(max_attempts=1)], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    running = start(backend, worker, job_id, at(1))
    assert backend.finish(worker, [failed(running, at(2))], now=at(2)) == []
    job = must_get(backend, job_id)
    assert (job.status, job.error, job.finished_at) == ("failed", "failed on attempt 1", at(2))
    assert kinds(backend, job_id) == ["enqueued", "reserved", "started", "failed"]
    assert backend.list_events(job_id)[-1].detail["error"] == "failed on attempt 1"
    assert backend.reserve(worker, [], 10, now=at(1000)) == []


@pytest.mark.parametrize("kind", ["failed", "timeout"])
def test_finish_with_retry_at_queues_the_job_again(backend: Backend, kind: str) -> None:
    [job_id] = enqueue(backend, [new_job(max_attempts=2)], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    running = start(backend, worker, job_id, at(1))
    outcome = failed(running, at(2), retry_at=at(30), kind=kind)
    assert backend.finish(worker, [outcome], now=at(2)) == []

    job = must_get(backend, job_id)
    assert (job.status, job.run_at, job.attempts) == ("queued", at(30), 1)
    assert job.error == f"{kind} on attempt 1"
    assert not job.is_final
    events = backend.list_events(job_id)
    assert [e.kind for e in events[-2:]] == [kind, "retry_scheduled"]
    assert [e.attempt for e in events[-2:]] == [1, 1]

    assert backend.reserve(worker, [], 10, now=at(29)) == []
    second = start(backend, worker, job_id, at(30))
    assert second.attempts == 2
    backend.finish(worker, [failed(second, at(31), kind=kind)], now=at(31))
    job = must_get(backend, job_id)
    assert (job.status, job.attempts, job.error) == ("failed", 2, f"{kind} on attempt 2")


def test_finish_timeout_final(backend: Backend) -> None:
    [job_id] = enqueue(backend, [new_job(timeout=1.0)], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    running = start(backend, worker, job_id, at(1))
    backend.finish(worker, [failed(running, at(2.5), kind="timeout")], now=at(3))
    job = must_get(backend, job_id)
    assert (job.status, job.finished_at) == ("failed", at(2.5))
    assert kinds(backend, job_id)[-1] == "timeout"


def test_finish_interrupted_queues_the_job_at_once(backend: Backend) -> None:
    [job_id] = enqueue(backend, [new_job(max_attempts=3)], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    running = start(backend, worker, job_id, at(1))
    outcome = Outcome(job_id, running.attempts, "interrupted", at(2), detail={"reason": "shutdown"})
    assert backend.finish(worker, [outcome], now=at(2)) == []
    job = must_get(backend, job_id)
    assert (job.status, job.finished_at) == ("queued", None)
    # the interrupted attempt stays counted in history but is given back
    assert (job.attempts, job.max_attempts) == (1, 4)
    assert kinds(backend, job_id)[-1] == "interrupted"
    other = backend.register_worker(worker_info("other"), now=at(2))
    again = start(backend, other, job_id, at(2))
    assert again.attempts == 2


def test_a_job_given_back_keeps_its_place_ahead_of_later_jobs(backend: Backend) -> None:
    """A job given back unbegun (its process stayed busy, the worker stops) is queued at
    once and keeps its run_at: the next claim takes it before the jobs enqueued after it,
    not behind the whole backlog."""
    [first] = enqueue(backend, [new_job()], now=T0)
    later = enqueue(backend, [new_job() for _ in range(3)], now=at(1))
    worker = backend.register_worker(worker_info(), now=T0)
    running = start(backend, worker, first, at(2))
    back = Outcome(first, running.attempts, "interrupted", at(3), detail={"reason": "given back"})
    assert backend.finish(worker, [back], now=at(3)) == []
    job = must_get(backend, first)
    assert (job.status, job.run_at) == ("queued", T0)
    claimed = backend.exchange(
        worker, outcomes=(), start_ids=(), claim=2, start_claimed=2, queues=(), now=at(4)
    ).started
    assert [j.id for j in claimed] == [first, later[0]]


def test_finish_cancelled_while_running(backend: Backend) -> None:
    [job_id] = enqueue(backend, [new_job(max_attempts=3)], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    running = start(backend, worker, job_id, at(1))
    outcome = Outcome(job_id, running.attempts, "cancelled", at(2), error="cancelled while running")
    assert backend.finish(worker, [outcome], now=at(2)) == []
    job = must_get(backend, job_id)
    assert (job.status, job.finished_at, job.error) == (
        "cancelled",
        at(2),
        "cancelled while running",
    )
    assert kinds(backend, job_id)[-1] == "cancelled"
    assert backend.reserve(worker, [], 10, now=at(100)) == []


def test_finish_records_a_batch(backend: Backend) -> None:
    ids = enqueue(backend, [new_job(max_attempts=2) for _ in range(4)], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    backend.reserve(worker, [], 10, now=at(1))
    jobs = {job.id: job for job in backend.mark_started(worker, ids, now=at(1))}
    outcomes = [
        succeeded(jobs[ids[0]], at(2), "ok"),
        failed(jobs[ids[1]], at(2), retry_at=at(10)),
        failed(jobs[ids[2]], at(2)),
        Outcome(ids[3], 99, "succeeded", at(2), result_json="1"),  # wrong attempt
    ]
    assert backend.finish(worker, outcomes, now=at(2)) == [ids[3]]
    assert [must_get(backend, i).status for i in ids] == [
        "succeeded",
        "queued",
        "failed",
        "running",
    ]
    assert backend.finish(worker, [], now=at(3)) == []


def test_finish_from_the_wrong_worker_is_rejected_and_recorded(backend: Backend) -> None:
    [job_id] = enqueue(backend, [new_job()], now=T0)
    owner = backend.register_worker(worker_info("owner"), now=T0)
    intruder = backend.register_worker(worker_info("intruder", host="h2", pid=2), now=T0)
    running = start(backend, owner, job_id, at(1))
    before = must_get(backend, job_id)
    events_before = backend.list_events(job_id)

    outcome = failed(running, at(2))
    assert backend.finish(intruder, [outcome], now=at(3)) == [job_id]

    assert must_get(backend, job_id) == before
    events = backend.list_events(job_id)
    assert events[: len(events_before)] == events_before
    [rejected] = events[len(events_before) :]
    assert (rejected.kind, rejected.attempt, rejected.at) == ("outcome_rejected", 1, at(3))
    assert (rejected.worker_id, rejected.worker_name) == (intruder, "intruder")
    assert rejected.detail["outcome"] == "failed"
    assert rejected.detail["error"] == "failed on attempt 1"

    # The owner can still record the real outcome.
    assert backend.finish(owner, [succeeded(running, at(4))], now=at(4)) == []
    assert must_get(backend, job_id).status == "succeeded"


def test_finish_for_the_wrong_attempt_is_rejected(backend: Backend) -> None:
    [job_id] = enqueue(backend, [new_job(max_attempts=3)], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    first = start(backend, worker, job_id, at(1))
    backend.finish(worker, [failed(first, at(2), retry_at=at(2))], now=at(2))
    second = start(backend, worker, job_id, at(3))
    before = must_get(backend, job_id)

    assert backend.finish(worker, [succeeded(first, at(4))], now=at(4)) == [job_id]
    assert must_get(backend, job_id) == before
    assert kinds(backend, job_id)[-1] == "outcome_rejected"
    assert backend.list_events(job_id)[-1].attempt == 1
    assert backend.finish(worker, [succeeded(second, at(5))], now=at(5)) == []


def test_finish_of_a_job_that_is_not_running_is_rejected(backend: Backend) -> None:
    done, reserved, queued = enqueue(backend, [new_job(), new_job(), new_job()], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    running = start(backend, worker, done, at(1))
    backend.finish(worker, [succeeded(running, at(2), "first")], now=at(2))
    [held] = backend.reserve(worker, [], 1, now=at(3))
    assert held.id == reserved

    # Recorded twice: the second is refused and the first result stays.
    assert backend.finish(worker, [failed(running, at(4))], now=at(4)) == [done]
    assert (must_get(backend, done).status, must_get(backend, done).result) == (
        "succeeded",
        "first",
    )
    # Reserved but never started, or still queued: there is no attempt to finish.
    assert backend.finish(worker, [Outcome(reserved, 0, "succeeded", at(4))], now=at(4)) == [
        reserved
    ]
    assert backend.finish(worker, [Outcome(queued, 0, "failed", at(4))], now=at(4)) == [queued]
    assert must_get(backend, reserved).status == "reserved"
    assert must_get(backend, queued).status == "queued"


def test_late_outcome_after_recovery_cannot_overwrite_the_new_attempt(backend: Backend) -> None:
    [job_id] = enqueue(backend, [new_job(max_attempts=2)], now=T0)
    old = backend.register_worker(worker_info("old", lease_seconds=10), now=T0)
    first = start(backend, old, job_id, at(1))

    # The old worker goes silent; its lease expires and the job is taken back.
    recovered = backend.recover_lost(now=at(11))
    assert recovered == [RecoveredJob(job_id, old, "running", "queued")]
    new = backend.register_worker(worker_info("new"), now=at(11))
    second = start(backend, new, job_id, at(12))
    assert second.attempts == 2

    # The old worker comes back from a partition with a result for attempt 1.
    assert backend.heartbeat(old, now=at(13)) is False
    assert backend.finish(old, [succeeded(first, at(13), "stale")], now=at(13)) == [job_id]
    assert backend.mark_started(old, [job_id], now=at(13)) == []
    backend.release(old, [job_id], now=at(13), reason="shutdown")
    job = must_get(backend, job_id)
    assert (job.status, job.worker_id, job.attempts, job.result) == ("running", new, 2, None)

    # The same attempt number from the wrong worker is refused too.
    assert backend.finish(old, [succeeded(second, at(14), "stale")], now=at(14)) == [job_id]
    assert backend.finish(new, [succeeded(second, at(15), "fresh")], now=at(15)) == []
    assert must_get(backend, job_id).result == "fresh"
    assert kinds(backend, job_id) == [
        "enqueued", "reserved", "started", "lost", "retry_scheduled", "reserved", "started",
        "outcome_rejected", "outcome_rejected", "succeeded",
    ]  # fmt: skip


# -- release ----------------------------------------------------------------------------


def test_release_puts_reserved_jobs_back_without_counting_an_attempt(backend: Backend) -> None:
    ids = enqueue(backend, [new_job(), new_job()], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    backend.reserve(worker, [], 10, now=at(1))
    backend.release(worker, ids, now=at(2), reason="shutdown")
    for job_id in ids:
        job = must_get(backend, job_id)
        assert (job.status, job.attempts) == ("queued", 0)
        event = backend.list_events(job_id)[-1]
        assert (event.kind, event.attempt, event.worker_id, event.at) == (
            "released",
            0,
            worker,
            at(2),
        )
        assert event.detail["reason"] == "shutdown"
    other = backend.register_worker(worker_info("other"), now=at(2))
    assert [job.id for job in backend.reserve(other, [], 10, now=at(3))] == ids


def test_release_is_fenced_and_leaves_running_jobs_alone(backend: Backend) -> None:
    running_id, reserved_id = enqueue(backend, [new_job(), new_job()], now=T0)
    owner = backend.register_worker(worker_info("owner"), now=T0)
    other = backend.register_worker(worker_info("other"), now=T0)
    backend.reserve(owner, [], 10, now=at(1))
    backend.mark_started(owner, [running_id], now=at(1))

    backend.release(other, [running_id, reserved_id], now=at(2), reason="shutdown")
    backend.release(owner, [running_id, NO_SUCH_JOB], now=at(2), reason="shutdown")
    backend.release(owner, [], now=at(2), reason="shutdown")
    assert must_get(backend, running_id).status == "running"
    assert must_get(backend, reserved_id).status == "reserved"
    assert "released" not in kinds(backend, running_id) + kinds(backend, reserved_id)


# -- workers: register, heartbeat, list ------------------------------------------------


def test_register_worker_and_list_workers(backend: Backend) -> None:
    info = worker_info("w-1", host="box-1", pid=321, queues=("a", "b"), lease_seconds=15)
    worker = backend.register_worker(info, now=T0)
    [record] = backend.list_workers()
    assert (record.id, record.name, record.host, record.pid) == (worker, "w-1", "box-1", 321)
    assert (record.processes, record.reserve, record.queues) == (2, 4, ("a", "b"))
    assert (record.status, record.started_at, record.heartbeat_at) == ("running", T0, T0)
    assert (record.expires_at, record.stopped_at) == (at(15), None)


def test_list_workers_newest_first_with_limit_and_stopped(backend: Backend) -> None:
    first = backend.register_worker(worker_info("one"), now=T0)
    second = backend.register_worker(worker_info("two"), now=at(1))
    third = backend.register_worker(worker_info("three", lease_seconds=5), now=at(2))
    backend.unregister_worker(first, now=at(3))
    backend.recover_lost(now=at(8))  # third's lease ran out at 7

    assert [w.id for w in backend.list_workers()] == [second]
    every = backend.list_workers(include_stopped=True)
    assert [(w.id, w.status) for w in every] == [
        (third, "lost"),
        (second, "running"),
        (first, "stopped"),
    ]
    assert every[2].stopped_at == at(3)
    assert every[0].stopped_at is not None
    assert [w.id for w in backend.list_workers(include_stopped=True, limit=2)] == [third, second]
    assert len(backend.list_workers(include_stopped=True, limit=None)) == 3


def test_heartbeat_extends_the_lease(backend: Backend) -> None:
    worker = backend.register_worker(worker_info(lease_seconds=20), now=T0)
    assert backend.heartbeat(worker, now=at(15)) is True
    [record] = backend.list_workers()
    assert (record.heartbeat_at, record.expires_at) == (at(15), at(35))
    # Not lost at 30 any more: the lease now runs to 35.
    assert backend.recover_lost(now=at(30)) == []
    assert backend.list_workers()[0].status == "running"


def test_heartbeat_of_a_lost_stopped_or_unknown_worker_is_false(backend: Backend) -> None:
    lost = backend.register_worker(worker_info("lost", lease_seconds=5), now=T0)
    stopped = backend.register_worker(worker_info("stopped", lease_seconds=100), now=T0)
    backend.recover_lost(now=at(6))
    backend.unregister_worker(stopped, now=at(6))
    before = backend.list_workers(include_stopped=True)
    for worker in (lost, stopped, NO_SUCH_WORKER):
        assert backend.heartbeat(worker, now=at(7)) is False
    assert backend.list_workers(include_stopped=True) == before
    assert {w.status for w in before} == {"lost", "stopped"}


# -- recover_lost -----------------------------------------------------------------------


def test_recover_lost_takes_back_only_expired_workers_jobs(backend: Backend) -> None:
    reserved, retry, final, alive_job = enqueue(
        backend,
        [new_job("r"), new_job("x", max_attempts=2), new_job("f", max_attempts=1), new_job("a")],
        now=T0,
    )
    dead = backend.register_worker(
        worker_info("dead", host="gone", pid=13, lease_seconds=10), now=T0
    )
    alive = backend.register_worker(worker_info("alive", lease_seconds=10), now=T0)
    backend.reserve(dead, [], 3, now=at(1))
    backend.mark_started(dead, [retry, final], now=at(1))
    start(backend, alive, alive_job, at(1))
    assert backend.heartbeat(alive, now=at(9)) is True

    assert backend.recover_lost(now=at(10)) == []  # the lease runs until 10, not before it
    recovered = backend.recover_lost(now=at(12))
    assert sorted(recovered, key=lambda r: r.job_id) == [
        RecoveredJob(reserved, dead, "reserved", "queued"),
        RecoveredJob(retry, dead, "running", "queued"),
        RecoveredJob(final, dead, "running", "failed"),
    ]
    assert backend.recover_lost(now=at(12)) == []  # nothing twice

    statuses = {w.id: w.status for w in backend.list_workers(include_stopped=True)}
    assert statuses == {dead: "lost", alive: "running"}
    assert must_get(backend, alive_job).status == "running"

    job = must_get(backend, reserved)
    assert (job.status, job.attempts) == ("queued", 0)
    assert kinds(backend, reserved) == ["enqueued", "reserved", "lost"]

    job = must_get(backend, retry)
    assert (job.status, job.attempts) == ("queued", 1)
    assert kinds(backend, retry) == ["enqueued", "reserved", "started", "lost", "retry_scheduled"]

    job = must_get(backend, final)
    assert (job.status, job.attempts, job.finished_at) == ("failed", 1, at(12))
    assert job.error is not None
    assert "lost" in job.error
    assert kinds(backend, final) == ["enqueued", "reserved", "started", "lost"]

    for job_id, attempt in ((reserved, 0), (retry, 1), (final, 1)):
        lost = next(e for e in backend.list_events(job_id) if e.kind == "lost")
        assert (lost.worker_id, lost.worker_name, lost.host, lost.pid) == (dead, "dead", "gone", 13)
        assert (lost.attempt, lost.at) == (attempt, at(12))

    # Both requeued jobs run again elsewhere, the running one as attempt 2.
    taken = backend.reserve(alive, [], 10, now=at(12))
    assert sorted(job.id for job in taken) == [reserved, retry]
    started = {
        job.id: job.attempts for job in backend.mark_started(alive, [reserved, retry], now=at(13))
    }
    assert started == {reserved: 1, retry: 2}


def test_a_worker_with_a_current_lease_is_never_touched(backend: Backend) -> None:
    [job_id] = enqueue(backend, [new_job(max_attempts=1)], now=T0)
    worker = backend.register_worker(worker_info(lease_seconds=30), now=T0)
    start(backend, worker, job_id, at(1))
    # The job runs for a day; the worker keeps heartbeating.
    for hour in range(1, 25):
        assert backend.heartbeat(worker, now=at(3600 * hour - 10)) is True
        assert backend.recover_lost(now=at(3600 * hour)) == []
    job = must_get(backend, job_id)
    assert (job.status, job.worker_id) == ("running", worker)
    assert backend.finish(worker, [succeeded(job, at(86_400))], now=at(86_400)) == []


def test_recover_lost_with_nothing_expired(backend: Backend) -> None:
    assert backend.recover_lost(now=T0) == []
    backend.register_worker(worker_info(lease_seconds=10), now=T0)
    assert backend.recover_lost(now=at(5)) == []


# -- unregister_worker ------------------------------------------------------------------


def test_unregister_worker_takes_back_held_jobs(backend: Backend) -> None:
    reserved, retry, final, other_job = enqueue(
        backend, [new_job(), new_job(max_attempts=2), new_job(), new_job()], now=T0
    )
    worker = backend.register_worker(worker_info("leaving"), now=T0)
    other = backend.register_worker(worker_info("staying"), now=T0)
    backend.reserve(worker, [], 3, now=at(1))
    backend.mark_started(worker, [retry, final], now=at(1))
    start(backend, other, other_job, at(1))

    backend.unregister_worker(worker, now=at(5))
    record = next(w for w in backend.list_workers(include_stopped=True) if w.id == worker)
    assert (record.status, record.stopped_at) == ("stopped", at(5))
    assert [w.id for w in backend.list_workers()] == [other]

    assert must_get(backend, reserved).status == "queued"
    assert must_get(backend, retry).status == "queued"
    assert must_get(backend, final).status == "failed"
    assert must_get(backend, other_job).status == "running"
    assert kinds(backend, retry)[-2:] == ["lost", "retry_scheduled"]
    assert kinds(backend, final)[-1] == "lost"
    lost = backend.list_events(final)[-1]
    assert (lost.worker_id, lost.at) == (worker, at(5))

    assert backend.heartbeat(worker, now=at(6)) is False
    assert backend.reserve(worker, [], 10, now=at(6)) == []
    assert backend.recover_lost(now=at(1000)) != []  # only the other worker, now expired
    assert must_get(backend, reserved).status == "queued"


def test_unregister_worker_holding_nothing(backend: Backend) -> None:
    worker = backend.register_worker(worker_info(), now=T0)
    backend.unregister_worker(worker, now=at(1))
    backend.unregister_worker(worker, now=at(2))  # twice is harmless
    [record] = backend.list_workers(include_stopped=True)
    assert (record.status, record.stopped_at) == ("stopped", at(1))


# -- cancel and retry -------------------------------------------------------------------


def test_cancel_a_queued_job(backend: Backend) -> None:
    [job_id] = enqueue(backend, [new_job(run_at=at(3600))], now=T0)
    job = backend.cancel(job_id, now=at(1), by="alice@desk", reason="not needed")
    assert (job.id, job.status, job.finished_at) == (job_id, "cancelled", at(1))
    assert must_get(backend, job_id) == job
    event = backend.list_events(job_id)[-1]
    assert (event.kind, event.attempt, event.worker_id, event.at) == ("cancelled", 0, None, at(1))
    assert event.detail == {"by": "alice@desk", "reason": "not needed"}
    worker = backend.register_worker(worker_info(), now=T0)
    assert backend.reserve(worker, [], 10, now=at(7200)) == []


def test_cancel_without_a_reason(backend: Backend) -> None:
    [job_id] = enqueue(backend, [new_job()], now=T0)
    backend.cancel(job_id, now=at(1), by="bob")
    assert backend.list_events(job_id)[-1].detail["by"] == "bob"


def test_cancel_errors_change_nothing(backend: Backend) -> None:
    done, cancelled = enqueue(backend, [new_job() for _ in range(2)], now=T0)
    backend.cancel(cancelled, now=T0, by="me")
    worker = backend.register_worker(worker_info(), now=T0)
    job_done = start(backend, worker, done, at(1))
    backend.finish(worker, [succeeded(job_done, at(2))], now=at(2))

    with pytest.raises(JobNotFound, match=str(NO_SUCH_JOB)):
        backend.cancel(NO_SUCH_JOB, now=at(3), by="me")
    for job_id, status in ((done, "succeeded"), (cancelled, "cancelled")):
        before, events = must_get(backend, job_id), backend.list_events(job_id)
        with pytest.raises(InvalidTransition, match=f"is {status}; it is already final"):
            backend.cancel(job_id, now=at(3), by="me")
        assert must_get(backend, job_id) == before
        assert backend.list_events(job_id) == events


def test_cancel_of_a_reserved_job_is_immediate_and_it_never_starts(backend: Backend) -> None:
    [job_id] = enqueue(backend, [new_job()], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    backend.reserve(worker, [], 1, now=at(1))
    job = backend.cancel(job_id, now=at(2), by="me", reason="obsolete")
    assert (job.status, job.finished_at) == ("cancelled", at(2))
    assert backend.mark_started(worker, [job_id], now=at(3)) == []
    assert kinds(backend, job_id) == ["enqueued", "reserved", "cancelled"]


def test_cancel_of_a_running_job_asks_its_worker(backend: Backend) -> None:
    job_id, other = enqueue(backend, [new_job(max_attempts=3), new_job()], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    running = start(backend, worker, job_id, at(1))
    start(backend, worker, other, at(1))
    assert backend.cancel_requests(worker) == []

    job = backend.cancel(job_id, now=at(2), by="me", reason="wrong data")
    assert job.status == "running"
    assert job.cancel_requested_at == at(2)
    assert job.max_attempts == job.attempts  # no retry may follow
    event = backend.list_events(job_id)[-1]
    assert (event.kind, event.detail) == ("cancel_requested", {"by": "me", "reason": "wrong data"})
    assert backend.cancel_requests(worker) == [job_id]
    assert backend.cancel_requests(backend.register_worker(worker_info("b"), now=T0)) == []
    # asking again changes nothing
    assert backend.cancel(job_id, now=at(3), by="me").cancel_requested_at == at(2)
    assert kinds(backend, job_id).count("cancel_requested") == 1

    outcome = Outcome(job_id, running.attempts, "cancelled", at(4), error="cancelled while running")
    assert backend.finish(worker, [outcome], now=at(4)) == []
    assert must_get(backend, job_id).status == "cancelled"
    assert backend.cancel_requests(worker) == []
    assert must_get(backend, other).status == "running"


def test_retry_of_an_exhausted_job_gives_one_more_attempt(backend: Backend) -> None:
    [job_id] = enqueue(backend, [new_job(max_attempts=1)], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    first = start(backend, worker, job_id, at(1))
    backend.finish(worker, [failed(first, at(2))], now=at(2))

    job = backend.retry(job_id, now=at(10), by="carol@desk")
    assert (job.status, job.attempts, job.max_attempts, job.run_at) == ("queued", 1, 2, at(10))
    assert job.finished_at is None
    event = backend.list_events(job_id)[-1]
    assert (event.kind, event.attempt, event.at) == ("retried", 1, at(10))
    assert event.detail["by"] == "carol@desk"

    assert backend.reserve(worker, [], 10, now=at(9)) == []
    second = start(backend, worker, job_id, at(10))
    assert second.attempts == 2
    backend.finish(worker, [failed(second, at(11))], now=at(11))
    assert must_get(backend, job_id).status == "failed"


def test_retry_keeps_attempts_left(backend: Backend) -> None:
    [job_id] = enqueue(backend, [new_job(max_attempts=3)], now=T0)
    backend.cancel(job_id, now=at(1), by="me")
    job = backend.retry(job_id, now=at(2), by="me")
    assert (job.status, job.attempts, job.max_attempts) == ("queued", 0, 3)
    worker = backend.register_worker(worker_info(), now=T0)
    assert start(backend, worker, job_id, at(3)).attempts == 1


def test_retry_errors_change_nothing(backend: Backend) -> None:
    queued, reserved, running, done = enqueue(backend, [new_job() for _ in range(4)], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    backend.reserve(worker, [], 4, now=at(1))
    backend.release(worker, [queued], now=at(1), reason="test")
    backend.mark_started(worker, [running, done], now=at(1))
    backend.finish(worker, [Outcome(done, 1, "succeeded", at(2), result_json="1")], now=at(2))

    with pytest.raises(JobNotFound, match=str(NO_SUCH_JOB)):
        backend.retry(NO_SUCH_JOB, now=at(3), by="me")
    for job_id, status in (
        (queued, "queued"),
        (reserved, "reserved"),
        (running, "running"),
        (done, "succeeded"),
    ):
        before, events = must_get(backend, job_id), backend.list_events(job_id)
        with pytest.raises(InvalidTransition, match=status):
            backend.retry(job_id, now=at(3), by="me")
        assert must_get(backend, job_id) == before
        assert backend.list_events(job_id) == events


# -- reading: get_job, list_jobs, list_events ------------------------------------------


def test_get_job_of_an_unknown_id(backend: Backend) -> None:
    assert backend.get_job(NO_SUCH_JOB) is None
    assert backend.list_events(NO_SUCH_JOB) == []


def test_get_job_names_the_worker(backend: Backend) -> None:
    [job_id] = enqueue(backend, [new_job()], now=T0)
    worker = backend.register_worker(worker_info("named"), now=T0)
    start(backend, worker, job_id, at(1))
    job = must_get(backend, job_id)
    assert (job.worker_id, job.worker_name) == (worker, "named")


def test_list_jobs_filters(backend: Backend) -> None:
    w42a, w42b, w7, kpi, other_task, later = enqueue(
        backend,
        [
            new_job("site.refresh", ref=("website", "42"), queue="web"),
            new_job("site.refresh", ref=("website", "42"), queue="web"),
            new_job("site.refresh", ref=("website", "7"), queue="web"),
            new_job("kpi.compute", ref=("kpi", "42")),
            new_job("site.other", queue="web"),
        ],
        now=T0,
    ) + enqueue(backend, [new_job("site.refresh", ref=("website", "42"))], now=at(100))
    worker = backend.register_worker(worker_info(), now=at(100))
    [held] = backend.reserve(worker, ["web"], 1, now=at(101))
    assert held.id == w42a
    backend.cancel(kpi, now=at(101), by="me")

    def ids(**filters: object) -> list[int]:
        return [job.id for job in backend.list_jobs(JobFilter(**filters))]  # type: ignore[arg-type]

    every = [later, other_task, kpi, w7, w42b, w42a]
    assert ids(limit=None) == every  # newest first
    assert ids() == every  # the default limit is plenty here
    assert ids(limit=2) == [later, other_task]
    assert ids(ref_type="website", ref_id="42") == [later, w42b, w42a]
    assert ids(ref_type="website") == [later, w7, w42b, w42a]
    assert ids(ref_id="42", ref_type="kpi") == [kpi]
    assert ids(task="site.refresh") == [later, w7, w42b, w42a]
    assert ids(queue="web") == [other_task, w7, w42b, w42a]
    assert ids(statuses=("reserved", "cancelled")) == [kpi, w42a]
    assert ids(statuses=("queued",)) == [later, other_task, w7, w42b]
    assert ids(statuses=()) == []
    assert ids(worker_id=worker) == [w42a]
    assert ids(worker_id=NO_SUCH_WORKER) == []
    assert ids(since=at(100)) == [later]
    assert ids(since=at(50)) == [later]
    assert ids(until=at(100)) == [other_task, kpi, w7, w42b, w42a]
    assert ids(since=T0, until=at(100.000001)) == every
    assert ids(ids=(w7, kpi, NO_SUCH_JOB)) == [kpi, w7]
    assert ids(task="site.refresh", queue="web", ref_type="website", ref_id="42") == [w42b, w42a]
    assert ids(task="nope") == []


def test_list_events_are_in_order_with_worker_details(backend: Backend) -> None:
    [job_id] = enqueue(backend, [new_job(max_attempts=2)], now=T0)
    first = backend.register_worker(worker_info("first", host="h1", pid=11), now=T0)
    second = backend.register_worker(worker_info("second", host="h2", pid=22), now=T0)
    running = start(backend, first, job_id, at(1))
    backend.finish(first, [failed(running, at(2), retry_at=at(3))], now=at(2))
    running = start(backend, second, job_id, at(3))
    backend.finish(second, [succeeded(running, at(4))], now=at(4))

    events = backend.list_events(job_id)
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert [(e.kind, e.attempt, e.worker_name, e.host, e.pid) for e in events] == [
        ("enqueued", 0, None, None, None),
        ("reserved", 0, "first", "h1", 11),
        ("started", 1, "first", "h1", 11),
        ("failed", 1, "first", "h1", 11),
        ("retry_scheduled", 1, "first", "h1", 11),
        ("reserved", 1, "second", "h2", 22),
        ("started", 2, "second", "h2", 22),
        ("succeeded", 2, "second", "h2", 22),
    ]
    assert [e.at for e in events] == [T0, at(1), at(1), at(2), at(2), at(3), at(3), at(4)]
    assert all(e.job_id == job_id for e in events)
    assert events[3].detail["error"] == "failed on attempt 1"


def test_events_of_an_attempt_name_the_child_process_that_ran_it(
    backend: Backend, sql_dsn: str
) -> None:
    """A claim started for child processes names each one on its ``started`` event and on
    the job it returns; the outcome's events name the child that reported it (a refused
    outcome too); events no child caused name none."""
    worker = backend.register_worker(worker_info(pid=11), now=T0)
    first, second, third = enqueue(backend, [new_job(max_attempts=2) for _ in range(3)], now=T0)
    exchanged = backend.exchange(
        worker, outcomes=(), start_ids=(), claim=3, start_claimed=3, queues=(), now=at(1),
        child_pids=[101, 102, 101],
    )  # fmt: skip
    assert [(job.id, job.child_pid) for job in exchanged.started] == [
        (first, 101),
        (second, 102),
        (third, 101),
    ]
    by_id = {job.id: job for job in exchanged.started}
    ok = replace(succeeded(must_get(backend, first), at(2)), child_pid=101)
    bad = replace(failed(must_get(backend, second), at(2), retry_at=at(3)), child_pid=102)
    backend.exchange(
        worker, outcomes=[ok, bad], start_ids=(), claim=0, start_claimed=0, queues=(),
        now=at(2),
    )  # fmt: skip
    late = replace(ok, child_pid=103)  # the same outcome again: refused by the fence
    assert backend.finish(worker, [late], now=at(2.5)) == [first]

    def pids(job_id: int) -> list[tuple[str, int | None, int | None]]:
        return [(e.kind, e.pid, e.child_pid) for e in backend.list_events(job_id)]

    assert pids(first) == [
        ("enqueued", None, None),
        ("started", 11, 101),
        ("succeeded", 11, 101),
        ("outcome_rejected", 11, 103),
    ]
    assert pids(second) == [
        ("enqueued", None, None),
        ("started", 11, 102),
        ("failed", 11, 102),
        ("retry_scheduled", 11, 102),
    ]
    assert [e.to_dict()["child_pid"] for e in backend.list_events(third)] == [None, 101]
    # and in the SQL view of history
    rows = query(sql_dsn, "SELECT job_id, kind, pid, child_pid FROM job_history ORDER BY id")
    assert [tuple(row[1:]) for row in rows if row[0] == first] == pids(first)
    assert by_id[third].child_pid == 101
    # Claimed without a child (reserved, then started by id): no child named.
    [job_id] = enqueue(backend, [new_job()], now=at(2.8))  # (before the retry's run_at)
    running = start(backend, worker, job_id, at(2.8))
    assert running.status == "running"
    assert pids(job_id) == [("enqueued", None, None), ("reserved", 11, None), ("started", 11, None)]


# -- task_stats -------------------------------------------------------------------------


def test_ended_counts_per_stretch_of_time_and_status(backend: Backend) -> None:
    ids = enqueue(backend, [new_job("a") for _ in range(4)] + [new_job("b")], now=T0)
    worker = backend.register_worker(worker_info(lease_seconds=3600), now=T0)
    for job_id, end in zip(ids[:3], (2, 11, 12), strict=True):
        backend.finish(worker, [succeeded(start_only(backend, worker, job_id, 1), at(end))],
                       now=at(end))  # fmt: skip
    backend.finish(worker, [failed(start_only(backend, worker, ids[3], 1), at(19.5))], now=at(20))
    backend.cancel(ids[4], now=at(25), by="me")  # at the window's end: not in it
    counts = backend.ended_counts(since=at(0), now=at(25), bucket_seconds=10.0)
    assert counts == [(0, "a", "succeeded", 1), (1, "a", "failed", 1), (1, "a", "succeeded", 2)]
    assert backend.ended_counts(since=at(12.5), now=at(30), bucket_seconds=5.0) == [
        (1, "a", "failed", 1), (2, "b", "cancelled", 1),
    ]  # fmt: skip


def test_run_time_percentiles_read_the_newest_jobs_of_the_window(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasktrail.backends.postgres.reads
    import tasktrail.backends.sqlite.reads

    for module in (tasktrail.backends.postgres.reads, tasktrail.backends.sqlite.reads):
        monkeypatch.setattr(module, "RUN_SAMPLE", 2)
    ids = enqueue(backend, [new_job("a") for _ in range(3)], now=T0)
    worker = backend.register_worker(worker_info(lease_seconds=3600), now=T0)
    for job_id, (began, end) in zip(ids, ((1, 2), (2, 5), (3, 8)), strict=True):
        job = start_only(backend, worker, job_id, began)
        backend.finish(worker, [succeeded(job, at(end))], now=at(end))
    [stats] = backend.task_stats(since=T0, now=at(10))
    # runs of 3 and 5 s (the two newest to finish); the counts are of all three
    assert (stats.run_p50, stats.counts["succeeded"]) == (pytest.approx(4, abs=1e-3), 3)
    # and so are the waits: 2 and 3 s from the enqueue, not the first job's 1 s
    assert (stats.wait_p50, stats.wait_p95) == (
        pytest.approx(2.5, abs=1e-3), pytest.approx(2.95, abs=1e-3),
    )  # fmt: skip


def test_task_stats_with_controlled_times(backend: Backend) -> None:
    s1, s2, f3, c4, r5, r6, q7, b8 = enqueue(
        backend, [new_job("a") for _ in range(7)] + [new_job("b")], now=T0
    )
    worker = backend.register_worker(worker_info(lease_seconds=3600), now=T0)
    backend.finish(worker, [succeeded(start_only(backend, worker, s1, 1), at(2))], now=at(2))
    backend.finish(worker, [succeeded(start_only(backend, worker, s2, 2), at(5))], now=at(5))
    backend.finish(worker, [failed(start_only(backend, worker, f3, 3), at(8))], now=at(8))
    backend.cancel(c4, now=at(4), by="me")
    start_only(backend, worker, r5, 9)
    [reserved] = backend.reserve(worker, [], 1, now=at(9))
    assert reserved.id == r6

    stats = {s.task: s for s in backend.task_stats(since=T0, now=at(10))}
    assert sorted(stats) == ["a", "b"]
    a = stats["a"]
    assert a.counts == {
        "queued": 1,  # q7
        "reserved": 1,  # r6
        "running": 1,  # r5
        "succeeded": 2,  # s1, s2
        "failed": 1,  # f3
        "cancelled": 1,  # c4
    }
    # Runs of 1, 3 and 5 seconds (a job cancelled while queued never ran); waits from
    # run_at to start of 1, 2 and 3 seconds.
    assert a.run_p50 == pytest.approx(3, abs=1e-3)
    assert a.run_p95 == pytest.approx(4.8, abs=1e-3)
    assert a.wait_p50 == pytest.approx(2, abs=1e-3)
    assert a.wait_p95 == pytest.approx(2.9, abs=1e-3)
    assert a.failure_rate == pytest.approx(1 / 3)
    assert a.throughput_per_active_minute == 4  # all four finished in the same minute
    b = stats["b"]
    assert b.counts == {**dict.fromkeys(a.counts, 0), "queued": 1}
    assert (b.run_p50, b.run_p95, b.wait_p50, b.wait_p95) == (None,) * 4
    assert (b.failure_rate, b.throughput_per_active_minute) == (None, 0.0)
    assert q7 < b8

    # The window is [since, now]: final counts, timings and throughput cover only jobs
    # that finished within it; active counts are as of now.
    later = {s.task: s for s in backend.task_stats(since=at(3), now=at(10))}["a"]
    assert later.counts == {**a.counts, "succeeded": 1}
    assert later.run_p50 == pytest.approx(4, abs=1e-3)  # runs of 3 and 5
    assert later.throughput_per_active_minute == 3
    boundary = {s.task: s for s in backend.task_stats(since=at(2), now=at(8))}["a"]
    assert boundary.counts["succeeded"] == 2  # s1 finished exactly at since
    assert boundary.counts["failed"] == 1  # f3 finished exactly at now
    earlier = {s.task: s for s in backend.task_stats(since=T0, now=at(4.5))}["a"]
    assert (earlier.counts["succeeded"], earlier.counts["failed"]) == (1, 0)
    assert earlier.failure_rate == 0.0


def test_task_stats_run_times_are_attempts_that_ended_in_their_child(backend: Backend) -> None:
    # Issue 16: a job lost with its worker "ran" until the lease lapsed (run p95 61 s).
    lost, retried, waiting, interrupted = enqueue(
        backend,
        [
            new_job("lost"),
            new_job("retried", max_attempts=2),
            new_job("waiting", max_attempts=2),
            new_job("interrupted"),
        ],
        now=T0,
    )
    short = backend.register_worker(worker_info("short", lease_seconds=30), now=T0)
    start_only(backend, short, lost, 1)
    worker = backend.register_worker(worker_info("long", lease_seconds=3600), now=T0)
    first = start_only(backend, worker, retried, 2)
    backend.finish(worker, [failed(first, at(6), retry_at=at(7))], now=at(6))
    timed_out = start_only(backend, worker, waiting, 2)
    backend.finish(worker, [failed(timed_out, at(12), at(500), "timeout")], now=at(12))
    cut = start_only(backend, worker, interrupted, 3)
    backend.finish(worker, [Outcome(interrupted, cut.attempts, "interrupted", at(20))], now=at(20))
    again = start_only(backend, worker, interrupted, 21)
    backend.finish(worker, [succeeded(again, at(23))], now=at(23))
    second = start_only(backend, worker, retried, 8)
    backend.finish(worker, [succeeded(second, at(9))], now=at(9))
    [recovered] = backend.recover_lost(now=at(61))
    assert (recovered.job_id, recovered.new_status) == (lost, "failed")

    stats = {s.task: s for s in backend.task_stats(since=T0, now=at(100))}
    # The lost attempt is no run: the job counts as failed, with no run time.
    assert stats["lost"].counts["failed"] == 1
    assert (stats["lost"].run_p50, stats["lost"].run_p95) == (None, None)
    # Both attempts of a retried job: 4 s (failed) and 1 s (succeeded).
    assert stats["retried"].run_p50 == pytest.approx(2.5, abs=1e-3)
    assert stats["retried"].run_p95 == pytest.approx(3.85, abs=1e-3)
    # An attempt that timed out counts, though its job waits for its retry.
    assert stats["waiting"].counts["queued"] == 1
    assert stats["waiting"].run_p50 == pytest.approx(10, abs=1e-3)
    # Interrupted by a shutdown (17 s) is no run; the attempt after it took 2 s.
    assert stats["interrupted"].run_p95 == pytest.approx(2, abs=1e-3)

    # An attempt counts if it ended within the window, measured from its own start.
    late = {s.task: s for s in backend.task_stats(since=at(7), now=at(100))}
    assert late["retried"].run_p50 == late["retried"].run_p95 == pytest.approx(1, abs=1e-3)
    assert (late["waiting"].run_p50, late["lost"].run_p50) == (pytest.approx(10, abs=1e-3), None)
    early = {s.task: s for s in backend.task_stats(since=T0, now=at(7))}
    assert early["retried"].run_p50 == pytest.approx(4, abs=1e-3)
    assert "interrupted" not in early  # nothing of it in the window, nothing active


def test_task_stats_throughput_is_per_minute_with_any_finish(backend: Backend) -> None:
    # T0 is 05:06:07.12: a burst of six within its minute, later two more in another.
    # Spread over the hour that is 8 / 60 per minute; per active minute it is 4.
    finishes = [1, 2, 3, 4, 5, 6, 3000, 3001]
    ids = enqueue(backend, [new_job("burst") for _ in finishes], now=T0)
    worker = backend.register_worker(worker_info(lease_seconds=7200), now=T0)
    for job_id, when in zip(ids, finishes, strict=True):
        job = start_only(backend, worker, job_id, when - 0.5)
        backend.finish(worker, [succeeded(job, at(when))], now=at(when))

    [burst] = backend.task_stats(since=T0, now=at(3600))
    assert burst.counts["succeeded"] == 8
    assert burst.throughput_per_active_minute == 4
    [tail] = backend.task_stats(since=at(10), now=at(3600))
    assert tail.throughput_per_active_minute == 2
    # Minutes are clock minutes (UTC): two finishes a second apart across a minute's end
    # are two active minutes.
    [before, after] = enqueue(backend, [new_job("edge"), new_job("edge")], now=at(3600))
    for job_id, when in ((before, 3652.5), (after, 3653.5)):  # 06:06:59.6, 06:07:00.6
        job = start_only(backend, worker, job_id, when - 0.1)
        backend.finish(worker, [succeeded(job, at(when))], now=at(when))
    edge = {s.task: s for s in backend.task_stats(since=at(3600), now=at(3700))}["edge"]
    assert edge.throughput_per_active_minute == 1


def test_task_stats_of_an_empty_database(backend: Backend) -> None:
    assert backend.task_stats(since=T0, now=at(60)) == []


# -- prune ------------------------------------------------------------------------------


def test_prune_deletes_old_final_jobs_and_their_events(backend: Backend) -> None:
    old_ok, old_failed, old_cancelled, new_ok, queued = enqueue(
        backend, [new_job() for _ in range(5)], now=T0
    )
    worker = backend.register_worker(worker_info(lease_seconds=3600), now=T0)
    backend.finish(worker, [succeeded(start_only(backend, worker, old_ok, 1), at(1))], now=at(1))
    backend.cancel(old_cancelled, now=at(1), by="me")
    backend.finish(worker, [failed(start_only(backend, worker, old_failed, 2), at(2))], now=at(2))
    backend.finish(
        worker, [succeeded(start_only(backend, worker, new_ok, 100), at(100))], now=at(100)
    )
    pruned_events = len(backend.list_events(old_ok)) + len(backend.list_events(old_cancelled))
    kept = {job_id: backend.list_events(job_id) for job_id in (old_failed, new_ok, queued)}

    report = backend.prune(
        older_than={"succeeded": timedelta(seconds=50), "cancelled": timedelta(seconds=50)},
        now=at(120),
    )
    assert report.jobs.get("succeeded", 0) == 1
    assert report.jobs.get("cancelled", 0) == 1
    assert report.jobs.get("failed", 0) == 0  # not asked for, however old
    assert report.events == pruned_events
    for job_id in (old_ok, old_cancelled):
        assert backend.get_job(job_id) is None
        assert backend.list_events(job_id) == []
    for job_id, events in kept.items():
        assert backend.list_events(job_id) == events
    assert {job.id for job in backend.list_jobs(JobFilter(limit=None))} == set(kept)

    at_cutoff = backend.prune(older_than={"succeeded": timedelta(0)}, now=at(100))
    assert sum(at_cutoff.jobs.values()) == 0  # finished exactly at the cutoff: kept
    assert at_cutoff.events == 0

    every_final = backend.prune(
        older_than={s: timedelta(0) for s in ("succeeded", "failed", "cancelled")}, now=at(1000)
    )
    assert every_final.jobs.get("succeeded", 0) == 1
    assert every_final.jobs.get("failed", 0) == 1
    assert every_final.events == len(kept[old_failed]) + len(kept[new_ok])
    # A queued job is never pruned, however old.
    assert [job.id for job in backend.list_jobs(JobFilter(limit=None))] == [queued]
    assert backend.list_events(queued) == kept[queued]

    [fresh] = enqueue(backend, [new_job()], now=at(1000))
    assert fresh > max(old_ok, old_failed, old_cancelled, new_ok, queued)  # ids never reused


def scheduled_job(record: ScheduleRecord, due: Any) -> NewJob:
    return new_job(record.definition.task)


def run_to_end(backend: Backend, worker: int, job_id: int, when: float, ok: bool) -> None:
    job = start_only(backend, worker, job_id, when)
    outcome = succeeded(job, at(when + 1)) if ok else failed(job, at(when + 1))
    backend.finish(worker, [outcome], now=at(when + 1))


def test_prune_takes_the_ledger_rows_of_pruned_jobs_and_old_ones_without_a_job(
    backend: Backend,
) -> None:
    # Issue 16: after a prune, ledger rows pointed at deleted jobs, and rows were never
    # pruned at all.
    backend.save_schedule(ScheduleDef("kpi:1", "kpi", Every(60.0)), now=T0)
    backend.save_schedule(ScheduleDef("gone:1", "gone", Every(60.0)), now=T0)
    worker = backend.register_worker(worker_info(lease_seconds=7200), now=T0)

    def fire(when: float) -> dict[str, int]:
        ticks = backend.fire_due_schedules(now=at(when), worker_id=None, make_job=scheduled_job)
        return {t.schedule: t.job_id for t in ticks if t.outcome == "fired" and t.job_id}

    first = fire(60)
    run_to_end(backend, worker, first["kpi:1"], 61, ok=True)
    run_to_end(backend, worker, first["gone:1"], 61, ok=True)
    assert backend.remove_schedule("gone:1")  # its ledger stays behind
    run_to_end(backend, worker, fire(120)["kpi:1"], 121, ok=False)
    latest = fire(400)["kpi:1"]  # 360 fires; 180, 240 and 300 were missed
    assert [(t.due_at, t.outcome) for t in backend.list_ticks("kpi:1")] == [
        (at(360), "fired"), (at(300), "missed"), (at(240), "missed"), (at(180), "missed"),
        (at(120), "fired"), (at(60), "fired"),
    ]  # fmt: skip

    # Succeeded jobs only: their rows go with them. Failed ones are kept forever, and so
    # are rows with no job.
    report = backend.prune(older_than={"succeeded": timedelta(seconds=100)}, now=at(1000))
    assert report.jobs == {"succeeded": 2}
    assert report.schedule_ticks == 2
    assert [t.due_at for t in backend.list_ticks("kpi:1")] == [
        at(s) for s in (360, 300, 240, 180, 120)
    ]
    assert backend.list_ticks("gone:1") == []
    assert backend.prune(older_than={"succeeded": timedelta(0)}, now=at(1000)).schedule_ticks == 0

    # Everything after 100 s: the failed job's row goes with it, rows with no job due
    # before the retention go; the row of the queued job stays with it, however old.
    every = {status: timedelta(seconds=100) for status in ("succeeded", "failed", "cancelled")}
    report = backend.prune(older_than=every, now=at(1000))
    assert (report.jobs["failed"], report.schedule_ticks) == (1, 4)
    [kept] = backend.list_ticks("kpi:1")
    assert (kept.due_at, kept.outcome, kept.job_id) == (at(360), "fired", latest)
    assert must_get(backend, latest).status == "queued"
    # A missed tick is kept until it is older than the longest retention.
    fire(1000)  # 960 fires, 420..900 missed
    report = backend.prune(older_than={**every, "failed": timedelta(seconds=300)}, now=at(1000))
    assert report.schedule_ticks == len(range(420, 700, 60))  # due before 700
    assert min(t.due_at for t in backend.list_ticks("kpi:1") if t.outcome == "missed") == at(720)
    # The ledger still does its job: old due times never fire again.
    assert all(t.due_at > at(960) for t in backend.fire_due_schedules(
        now=at(1100), worker_id=None, make_job=scheduled_job))  # fmt: skip


def test_prune_takes_workers_stopped_or_lost_longer_than_the_retention(
    backend: Backend, sql_dsn: str
) -> None:
    held, released = enqueue(backend, [new_job(), new_job()], now=T0)
    stopped = backend.register_worker(worker_info("stopped"), now=T0)
    assert [job.id for job in backend.reserve(stopped, [], 1, now=at(1))] == [held]
    backend.release(stopped, [held], now=at(2), reason="test")
    backend.unregister_worker(stopped, now=at(10))
    lost = backend.register_worker(worker_info("lost", lease_seconds=30), now=T0)
    running = backend.register_worker(worker_info("running", lease_seconds=10**6), now=T0)
    # A worker marked lost that still holds a job (written by hand: the backends take a
    # lost worker's jobs back in the same transaction) is not deleted.
    holding = backend.register_worker(worker_info("holding", lease_seconds=10**6), now=T0)
    start_only(backend, holding, released, 3)
    assert backend.recover_lost(now=at(100)) == []  # "lost" held nothing
    lost_at = at(50).isoformat()
    by_hand = f"UPDATE workers SET status = 'lost', stopped_at = '{lost_at}' WHERE id = {holding}"  # noqa: S608
    execute(sql_dsn, by_hand)
    recent = backend.register_worker(worker_info("recent"), now=T0)
    backend.unregister_worker(recent, now=at(2500))

    every = {status: timedelta(seconds=1000) for status in ("succeeded", "failed", "cancelled")}
    # A final status kept forever keeps stopped workers too: their jobs' history names them.
    assert backend.prune(older_than={"succeeded": timedelta(0)}, now=at(3000)).workers == 0
    report = backend.prune(older_than=every, now=at(3000))
    assert report.workers == 2
    remaining = {w.name: w.status for w in backend.list_workers(include_stopped=True)}
    assert remaining == {"running": "running", "holding": "lost", "recent": "stopped"}
    assert {stopped, lost}.isdisjoint(w.id for w in backend.list_workers(include_stopped=True))
    # History still names the deleted worker by id.
    first_reserved = next(e for e in backend.list_events(held) if e.kind == "reserved")
    assert (first_reserved.worker_id, first_reserved.worker_name) == (stopped, None)
    # The one that is running is never deleted, however old.
    assert backend.prune(older_than=every, now=at(10**7)).workers == 1  # "recent"
    assert backend.heartbeat(running, now=at(10**7)) is True
    names = {w.name for w in backend.list_workers(include_stopped=True)}
    assert names == {"running", "holding"}


def execute(dsn: str, statement: str) -> None:
    """Change the backend's tables by hand, as a user with psql or sqlite3 could."""
    parsed = parse_dsn(dsn)
    if isinstance(parsed, SqliteDsn):
        conn = sqlite3.connect(str(parsed.path))
        try:
            with conn:
                conn.execute(statement)
        finally:
            conn.close()
        return
    import psycopg

    with psycopg.connect(parsed.conninfo) as pg:
        pg.execute(f'SET search_path TO "{parsed.schema}"')
        pg.execute(statement.encode())


def start_only(backend: Backend, worker: int, job_id: int, when: float) -> Job:
    """Reserve and start ``job_id`` at ``at(when)``, releasing any other job claimed."""
    taken = backend.reserve(worker, [], 100, now=at(when))
    assert job_id in [job.id for job in taken]
    others = [job.id for job in taken if job.id != job_id]
    if others:
        backend.release(worker, others, now=at(when), reason="test")
    [job] = backend.mark_started(worker, [job_id], now=at(when))
    return job
