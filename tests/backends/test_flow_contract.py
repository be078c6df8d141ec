"""Flow control in the Backend contract: unique jobs, per-object locks, cancellation,
schedules and their tick ledger. Run against every backend (the ``dsn`` fixture).

Time is a parameter: every call gets its ``now`` (``T0`` is far from the real clock), so
nothing sleeps. After each test the ``backend`` fixture checks that every job's history
is a valid lifecycle path ending in its current status.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tasktrail.backends import Backend, JobFilter, RecoveredJob
from tasktrail.errors import (
    ConfigurationError,
    InvalidArguments,
    InvalidTransition,
    ScheduleNotFound,
)
from tasktrail.job import Enqueued, NewJob, Outcome, Ref
from tasktrail.schedule import MAX_CATCH_UP, Cron, Every, ScheduleDef, ScheduleRecord, Tick

from .helpers import (
    T0,
    at,
    enqueue,
    failed,
    kinds,
    must_get,
    new_job,
    readable,
    run_forked,
    start,
    succeeded,
    worker_info,
)
from .targets import BackendTarget


def unique(key: str, task: str = "kpi.refresh", **options: Any) -> NewJob:
    return new_job(task, **options)._replace(unique_key=key)


def locked(key: str, task: str = "kpi.refresh", **options: Any) -> NewJob:
    return new_job(task, **options)._replace(lock_key=key)


def ids_of(jobs: list[Any]) -> list[int]:
    return [job.id for job in jobs]


def job_count(backend: Backend) -> int:
    return len(backend.list_jobs(JobFilter(limit=None)))


def cancelled_outcome(job: Any, finished_at: datetime) -> Outcome:
    return Outcome(
        job.id,
        job.attempts,
        "cancelled",
        finished_at,
        error="cancelled while running",
        detail={"reason": "cancel requested"},
    )


# -- unique jobs --------------------------------------------------------------------------


def test_a_second_enqueue_of_a_unique_key_returns_the_existing_job(backend: Backend) -> None:
    [first] = backend.enqueue([unique("kpi:42", ref=("kpi", "42"))], now=T0)
    assert first.created
    [again] = backend.enqueue([unique("kpi:42", "other.task", priority=9)], now=at(1))
    assert again == Enqueued(first.id, False)

    job = must_get(backend, first.id)
    assert (job.unique_key, job.task, job.priority, job.created_at) == (
        "kpi:42",
        "kpi.refresh",
        0,
        T0,
    )
    assert kinds(backend, first.id) == ["enqueued"]  # joining writes no event
    assert job_count(backend) == 1


def test_duplicates_within_one_batch_join_the_first(backend: Backend) -> None:
    enqueued = backend.enqueue(
        [unique("a"), unique("a"), new_job(), unique("b"), unique("a"), new_job()], now=T0
    )
    a, b = enqueued[0].id, enqueued[3].id
    assert [(item.id, item.created) for item in enqueued] == [
        (a, True),
        (a, False),
        (enqueued[2].id, True),
        (b, True),
        (a, False),
        (enqueued[5].id, True),
    ]
    assert len({a, b, enqueued[2].id, enqueued[5].id}) == 4
    assert job_count(backend) == 4
    assert kinds(backend, a) == ["enqueued"]


def test_jobs_without_a_unique_key_are_never_merged(backend: Backend) -> None:
    ids = enqueue(backend, [new_job("kpi.refresh", 1, ref=("kpi", "1")) for _ in range(3)], now=T0)
    ids += enqueue(backend, [new_job("kpi.refresh", 1, ref=("kpi", "1"))], now=at(1))
    assert len(set(ids)) == 4


def test_unique_keys_are_not_shared_with_lock_keys(backend: Backend) -> None:
    [u] = enqueue(backend, [unique("kpi:1")], now=T0)
    [lk] = enqueue(backend, [locked("kpi:1")], now=T0)
    assert u != lk


@pytest.mark.parametrize("state", ["reserved", "running", "waiting for a retry"])
def test_a_unique_key_stays_taken_while_the_job_is_active(backend: Backend, state: str) -> None:
    [job_id] = enqueue(backend, [unique("k", max_attempts=2)], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    backend.reserve(worker, [], 1, now=at(1))
    if state != "reserved":
        [running] = backend.mark_started(worker, [job_id], now=at(2))
    if state == "waiting for a retry":
        backend.finish(worker, [failed(running, at(3), retry_at=at(60))], now=at(3))
        assert must_get(backend, job_id).status == "queued"
    assert backend.enqueue([unique("k")], now=at(4)) == [Enqueued(job_id, False)]
    assert job_count(backend) == 1


@pytest.mark.parametrize("ending", ["succeeded", "failed", "cancelled", "cancelled while running"])
def test_a_final_job_frees_its_unique_key(backend: Backend, ending: str) -> None:
    [first] = enqueue(backend, [unique("k")], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    if ending == "cancelled":
        backend.cancel(first, now=at(1), by="me")
    else:
        running = start(backend, worker, first, at(1))
        if ending == "succeeded":
            backend.finish(worker, [succeeded(running, at(2))], now=at(2))
        elif ending == "failed":
            backend.finish(worker, [failed(running, at(2))], now=at(2))
        else:
            backend.cancel(first, now=at(2), by="me")
            assert backend.enqueue([unique("k")], now=at(2)) == [Enqueued(first, False)]
            backend.finish(worker, [cancelled_outcome(running, at(3))], now=at(3))
    assert must_get(backend, first).is_final

    [second] = backend.enqueue([unique("k")], now=at(5))
    assert second.created and second.id != first
    assert backend.enqueue([unique("k")], now=at(6)) == [Enqueued(second.id, False)]
    assert must_get(backend, second.id).unique_key == "k"


def test_a_failed_unique_job_is_retried_only_while_its_key_is_free(backend: Backend) -> None:
    [old] = enqueue(backend, [unique("k")], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    running = start(backend, worker, old, at(1))
    backend.finish(worker, [failed(running, at(2))], now=at(2))
    [new] = enqueue(backend, [unique("k")], now=at(3))

    before, events = must_get(backend, old), backend.list_events(old)
    with pytest.raises(InvalidTransition) as caught:
        backend.retry(old, now=at(4), by="me")
    message = str(caught.value)
    assert f"job {old}" in message and f"job {new}" in message and "'k'" in message
    assert must_get(backend, old) == before
    assert backend.list_events(old) == events

    backend.cancel(new, now=at(5), by="me")
    assert backend.retry(old, now=at(6), by="me").status == "queued"
    assert backend.enqueue([unique("k")], now=at(7)) == [Enqueued(old, False)]


def test_concurrent_enqueues_of_one_key_make_one_job(
    backend: Backend, dsn: str, backend_target: BackendTarget, tmp_path: Path
) -> None:
    def enqueue_many_times(index: int) -> list[list[Any]]:
        own = backend_target.open(dsn)
        try:
            results = []
            for round_number in range(15):
                batch = [unique("kpi:7"), unique(f"own:{index}:{round_number}")]
                results.extend([e.id, e.created] for e in own.enqueue(batch, now=T0))
            return results
        finally:
            own.close()

    results = run_forked(6, enqueue_many_times, tmp_path)
    shared = [answer for result in results for answer in result[::2]]  # the "kpi:7" ones
    assert len(shared) == 6 * 15
    assert len({job_id for job_id, _ in shared}) == 1
    assert sum(1 for _, created in shared if created) == 1
    own = [answer for result in results for answer in result[1::2]]
    assert all(created for _, created in own)
    assert job_count(backend) == 1 + 6 * 15


def test_enqueues_of_a_unique_key_racing_with_its_job_ending(
    backend: Backend, dsn: str, backend_target: BackendTarget, tmp_path: Path
) -> None:
    """While one process keeps finishing the key's job, others keep enqueueing the key:
    each enqueue either makes the next job or names the active one, never fails."""

    enqueuers = 4

    def work(index: int) -> list[list[Any]]:
        own = backend_target.open(dsn)
        try:
            if index == 0:  # the worker: runs the key's jobs until the enqueuers are done
                worker = own.register_worker(worker_info(pid=os.getpid()), now=T0)
                while True:
                    finished = len(list(tmp_path.glob("done-*")))
                    claimed = own.reserve(worker, [], 1, now=at(1))
                    for job in claimed:
                        [running] = own.mark_started(worker, [job.id], now=at(1))
                        own.finish(worker, [succeeded(running, at(1))], now=at(1))
                    if finished == enqueuers and not claimed:
                        return []
            # Enqueue until this process has seen the key taken three times (its job ended
            # and a new one was made twice); the deadline only matters if that never happens,
            # and the assertions below then fail.
            answers = []
            deadline = time.monotonic() + 30
            while len(answers) < 50 or (
                len({job_id for job_id, _ in answers}) < 3 and time.monotonic() < deadline
            ):
                [answer] = own.enqueue([unique("kpi:7")], now=at(1))
                answers.append([answer.id, answer.created])
            return answers
        finally:
            own.close()
            (tmp_path / f"done-{index}").touch()

    results = run_forked(1 + enqueuers, work, tmp_path)
    answers = [answer for result in results[1:] for answer in result]
    jobs = backend.list_jobs(JobFilter(limit=None))
    assert sorted(job_id for job_id, created in answers if created) == sorted(ids_of(jobs))
    assert {job_id for job_id, _ in answers} == set(ids_of(jobs))
    assert len(jobs) >= 3  # the key was taken, freed and taken again, twice
    events = sorted((e for job in jobs for e in backend.list_events(job.id)), key=lambda e: e.id)
    active: set[int] = set()
    for event in events:
        if event.kind == "enqueued":
            assert not active, f"job {event.job_id} enqueued while {active} was active"
            active.add(event.job_id)
        elif event.kind == "succeeded":
            active.discard(event.job_id)


def test_a_worker_is_told_which_wake_ups_ask_for_a_cancel(
    backend: Backend, dsn: str, backend_target: BackendTarget
) -> None:
    """An enqueue wakes a worker for jobs; a cancel request of a job it runs wakes it
    and says so, so that it looks at its cancel requests at once (and only then)."""
    worker = backend.register_worker(worker_info(pid=os.getpid()), now=T0)
    fd = backend.wakeup_fileno()
    assert fd is not None
    backend.consume_wakeups()
    producer = backend_target.open(dsn)  # another process's connection, as a producer's
    try:
        [job_id] = enqueue(producer, [new_job()], now=T0)
        assert readable(fd, 10), "no wake-up after an enqueue"
        assert backend.consume_wakeups() is False
        assert not readable(fd, 0)
        start(backend, worker, job_id, at(1))

        producer.cancel(job_id, now=at(2), by="test")
        assert readable(fd, 10), "no wake-up after a cancel request"
        assert backend.consume_wakeups() is True
        assert backend.cancel_requests(worker) == [job_id]
    finally:
        producer.close()
        backend.unregister_worker(worker, now=at(3))


def test_a_job_given_back_to_run_now_wakes_the_other_workers(
    backend: Backend, dsn: str, backend_target: BackendTarget
) -> None:
    """A worker that gives a started job back (its process never began it, or it is
    stopping) wakes the idle workers, as an enqueue does: one of them may have a free
    process. An attempt put back for later (a retry) wakes nobody."""
    idle = backend_target.open(dsn)  # another worker's connection
    try:
        other = idle.register_worker(worker_info("idle", pid=os.getpid()), now=T0)
        fd = idle.wakeup_fileno()
        assert fd is not None
        worker = backend.register_worker(worker_info("busy"), now=T0)
        first, second = enqueue(backend, [new_job(max_attempts=2), new_job()], now=T0)
        busy = backend.exchange(
            worker, outcomes=(), start_ids=(), claim=2, start_claimed=2, queues=(), now=at(1)
        ).started
        assert readable(fd, 10)  # (the enqueue)
        idle.consume_wakeups()
        assert not readable(fd, 0.2)
        by_id = {job.id: job for job in busy}
        later = failed(must_get(backend, first), at(2), retry_at=at(60))
        backend.finish(worker, [later], now=at(2))
        assert not readable(fd, 0.2), "a retry for later woke a worker"
        given_back = Outcome(
            second, by_id[second].attempts, "interrupted", at(3), detail={"reason": "test"}
        )
        backend.finish(worker, [given_back], now=at(3))
        assert readable(fd, 10), "no wake-up for a job given back"
        assert idle.consume_wakeups() is False
        [taken] = idle.exchange(
            other, outcomes=(), start_ids=(), claim=1, start_claimed=1, queues=(), now=at(4)
        ).started
        assert taken.id == second
    finally:
        idle.close()


def test_a_deferred_job_goes_back_for_later_without_using_an_attempt(backend: Backend) -> None:
    """``deferred`` (the worker has no such task): queued again at the back-off's
    ``run_at``, its attempt given back, the event says why; a cancel asked meanwhile
    ends it instead."""
    worker = backend.register_worker(worker_info(), now=T0)
    first, second = enqueue(backend, [new_job("not.deployed"), new_job("not.deployed")], now=T0)
    started = backend.exchange(
        worker, outcomes=(), start_ids=(), claim=2, start_claimed=2, queues=(), now=at(1)
    ).started
    by_id = {job.id: job for job in started}
    backend.cancel(second, now=at(1.5), by="test")
    outcomes = [
        Outcome(
            job_id,
            by_id[job_id].attempts,
            "deferred",
            at(2),
            error="unknown task",
            retry_at=at(7),
            detail={"reason": "unknown_task", "run_at": at(7).isoformat()},
        )
        for job_id in (first, second)
    ]
    assert backend.finish(worker, outcomes, now=at(2)) == []
    job = must_get(backend, first)
    assert (job.status, job.attempts, job.max_attempts, job.run_at) == ("queued", 1, 2, at(7))
    [event] = [e for e in backend.list_events(first) if e.kind == "deferred"]
    assert (event.attempt, event.detail["reason"], event.at) == (1, "unknown_task", at(2))
    assert must_get(backend, second).status == "cancelled"
    # Not claimable before its time, then claimed again.
    assert backend.reserve(worker, [], 1, now=at(6)) == []
    [again] = backend.reserve(worker, [], 1, now=at(7))
    assert again.id == first


# -- per-object locks ----------------------------------------------------------------------


def test_one_job_per_lock_key_is_claimed_even_with_a_large_limit(backend: Backend) -> None:
    a1, a2, b1, free, a3 = enqueue(
        backend, [locked("kpi:1"), locked("kpi:1"), locked("kpi:2"), new_job(), locked("kpi:1")],
        now=T0,
    )  # fmt: skip
    worker = backend.register_worker(worker_info(), now=T0)
    other = backend.register_worker(worker_info("other"), now=T0)
    assert ids_of(backend.reserve(worker, [], 10, now=at(1))) == [a1, b1, free]
    assert backend.reserve(other, [], 10, now=at(1)) == []
    for waiting in (a2, a3):
        job = must_get(backend, waiting)
        assert (job.status, job.worker_id, job.lock_key) == ("queued", None, "kpi:1")
        assert kinds(backend, waiting) == ["enqueued"]  # it holds no slot anywhere

    # Running still holds the lock; only the end of the attempt frees it.
    [running] = backend.mark_started(worker, [a1], now=at(2))
    assert backend.reserve(other, [], 10, now=at(3)) == []
    backend.finish(worker, [succeeded(running, at(4))], now=at(4))
    assert ids_of(backend.reserve(other, [], 10, now=at(5))) == [a2]
    assert backend.reserve(worker, [], 10, now=at(5)) == []


def test_a_claim_fills_its_limit_past_jobs_waiting_for_a_lock(backend: Backend) -> None:
    # The first jobs in claim order all share one key: the claim must not stop at them.
    waiting = enqueue(backend, [locked("kpi:1", priority=5) for _ in range(6)], now=T0)
    free = enqueue(backend, [new_job(), locked("kpi:2"), new_job()], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    assert ids_of(backend.reserve(worker, [], 3, now=at(1))) == [waiting[0], *free[:2]]
    assert ids_of(backend.reserve(worker, ["default"], 3, now=at(1))) == [free[2]]


def test_jobs_sharing_a_lock_run_one_after_another_in_order(backend: Backend) -> None:
    ids = enqueue(backend, [locked("website:42") for _ in range(5)], now=T0)
    workers = [backend.register_worker(worker_info(f"w{n}"), now=T0) for n in range(3)]
    order = []
    for step in range(5):
        now = at(10 * step + 1)
        claims = [backend.reserve(worker, [], 4, now=now) for worker in workers]
        [[job]] = [claim for claim in claims if claim]
        holder = workers[[bool(c) for c in claims].index(True)]
        order.append(job.id)
        [running] = backend.mark_started(holder, [job.id], now=now)
        assert all(backend.reserve(w, [], 4, now=now) == [] for w in workers)
        backend.finish(holder, [succeeded(running, now + timedelta(seconds=5))], now=now)
    assert order == ids


def test_lock_and_priority(backend: Backend) -> None:
    low, high, plain, other_key = enqueue(
        backend,
        [
            locked("kpi:1", priority=0),
            locked("kpi:1", priority=5),
            new_job(priority=1),
            locked("kpi:2", priority=3, run_at=at(-5)),
        ],
        now=T0,
    )
    worker = backend.register_worker(worker_info(), now=T0)
    # The best job of each key is claimed, in the usual order; the rest of the key waits.
    assert ids_of(backend.reserve(worker, [], 10, now=at(1))) == [high, other_key, plain]
    # A waiting high-priority job never stops a claim of something else.
    [late_free] = enqueue(backend, [new_job(priority=-10)], now=at(2))
    [urgent] = enqueue(backend, [locked("kpi:2", priority=100)], now=at(2))
    assert ids_of(backend.reserve(worker, [], 1, now=at(3))) == [late_free]
    [running] = backend.mark_started(worker, [high], now=at(4))
    backend.finish(worker, [succeeded(running, at(5))], now=at(5))
    assert ids_of(backend.reserve(worker, [], 10, now=at(6))) == [low]
    backend.release(worker, [other_key], now=at(7), reason="shutdown")
    # Released: the lock is free again, and the key's best job is now the urgent one.
    assert ids_of(backend.reserve(worker, [], 10, now=at(8))) == [urgent]
    assert must_get(backend, other_key).status == "queued"


def test_a_lock_is_not_held_by_a_job_waiting_for_its_run_at(backend: Backend) -> None:
    later, now_job = enqueue(backend, [locked("k", run_at=at(60)), locked("k")], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    assert ids_of(backend.reserve(worker, [], 10, now=at(1))) == [now_job]
    [running] = backend.mark_started(worker, [now_job], now=at(2))
    assert backend.reserve(worker, [], 10, now=at(61)) == []  # now_job holds k
    backend.finish(worker, [succeeded(running, at(62))], now=at(62))
    assert ids_of(backend.reserve(worker, [], 10, now=at(63))) == [later]


ENDINGS = [
    "succeeded",
    "failed",
    "failed with a retry",
    "timeout",
    "interrupted",
    "cancelled while reserved",
    "cancelled while running",
    "released",
    "worker lost while reserved",
    "worker lost while running",
    "worker unregistered",
]


@pytest.mark.parametrize("ending", ENDINGS)
def test_every_way_a_hold_ends_frees_the_lock(backend: Backend, ending: str) -> None:
    holder, waiter = enqueue(backend, [locked("k", max_attempts=3), locked("k")], now=T0)
    worker = backend.register_worker(worker_info(lease_seconds=10), now=T0)
    assert ids_of(backend.reserve(worker, [], 10, now=at(1))) == [holder]
    if "reserved" not in ending and ending not in ("released", "worker unregistered"):
        [running] = backend.mark_started(worker, [holder], now=at(2))
    other = backend.register_worker(worker_info("other", lease_seconds=100), now=at(2))
    assert backend.reserve(other, [], 10, now=at(3)) == []

    if ending == "succeeded":
        backend.finish(worker, [succeeded(running, at(4))], now=at(4))
    elif ending in ("failed", "timeout"):
        backend.finish(worker, [failed(running, at(4), kind=ending)], now=at(4))
    elif ending == "failed with a retry":
        backend.finish(worker, [failed(running, at(4), retry_at=at(4))], now=at(4))
    elif ending == "interrupted":
        outcome = Outcome(holder, running.attempts, "interrupted", at(4), detail={"x": 1})
        backend.finish(worker, [outcome], now=at(4))
    elif ending == "cancelled while reserved":
        backend.cancel(holder, now=at(4), by="me")
    elif ending == "cancelled while running":
        backend.cancel(holder, now=at(4), by="me")
        # Asked to cancel, but the child still runs: the lock holds until it is killed.
        assert backend.reserve(other, [], 10, now=at(4)) == []
        backend.finish(worker, [cancelled_outcome(running, at(5))], now=at(5))
    elif ending == "released":
        backend.release(worker, [holder], now=at(4), reason="shutdown")
    elif ending.startswith("worker lost"):
        recovered = backend.recover_lost(now=at(12))
        assert [r.job_id for r in recovered] == [holder]
    else:
        backend.unregister_worker(worker, now=at(4))

    # One job of the key is claimable again. A holder sent back unstarted, or interrupted
    # (not its fault), keeps its place (same run_at, lower id); otherwise the waiting job
    # goes first (the holder is final, or queued again with a later run_at).
    requeued = ("released", "worker lost while reserved", "worker unregistered", "interrupted")
    expected = holder if ending in requeued else waiter
    assert ids_of(backend.reserve(other, [], 10, now=at(20))) == [expected]
    assert backend.reserve(other, [], 10, now=at(20)) == []  # and holds the lock again


def test_claims_with_locks_never_overlap_across_processes(
    backend: Backend, dsn: str, backend_target: BackendTarget, tmp_path: Path
) -> None:
    keys = ["kpi:1", "kpi:2", "kpi:3"]
    jobs = [locked(keys[i % 3]) if i % 4 else new_job() for i in range(90)]
    ids = enqueue(backend, jobs, now=T0)

    def claim_until_empty(index: int) -> list[int]:
        rng = random.Random(index)
        own = backend_target.open(dsn)
        try:
            worker = own.register_worker(worker_info(f"c{index}", pid=os.getpid()), now=T0)
            taken: list[int] = []
            active = ("queued", "reserved", "running")
            while True:
                claimed = own.reserve(worker, [], rng.randint(1, 4), now=at(1))
                if not claimed:
                    if not own.list_jobs(JobFilter(statuses=active, limit=1)):
                        break
                    continue  # the rest wait for locks other processes hold
                taken.extend(job.id for job in claimed)
                started = own.mark_started(worker, ids_of(claimed), now=at(2))
                assert (
                    own.finish(worker, [succeeded(job, at(3)) for job in started], now=at(3)) == []
                )
            return taken
        finally:
            own.close()

    claims = run_forked(5, claim_until_empty, tmp_path)
    taken = [job_id for claim in claims for job_id in claim]
    assert sorted(taken) == ids
    # From history, in the order it was written: never two holders of one key at once.
    lock_of = {job.id: job.lock_key for job in backend.list_jobs(JobFilter(limit=None))}
    events = sorted(
        (event for job_id in ids for event in backend.list_events(job_id)), key=lambda e: e.id
    )
    holders: dict[str, set[int]] = {key: set() for key in keys}
    most = Counter[str]()
    for event in events:
        key = lock_of[event.job_id]
        if key is None:
            continue
        if event.kind == "reserved":
            holders[key].add(event.job_id)
            most[key] = max(most[key], len(holders[key]))
        elif event.kind == "succeeded":
            holders[key].discard(event.job_id)
    assert most == dict.fromkeys(keys, 1)


# -- cancellation ----------------------------------------------------------------------------


def test_cancel_of_a_queued_job_frees_its_unique_key_and_records_who(backend: Backend) -> None:
    [job_id] = enqueue(backend, [unique("k", run_at=at(100))], now=T0)
    job = backend.cancel(job_id, now=at(1), by="alice@desk", reason="wrong kpi")
    assert (job.status, job.finished_at, job.cancel_requested_at) == ("cancelled", at(1), None)
    assert backend.list_events(job_id)[-1].detail == {"by": "alice@desk", "reason": "wrong kpi"}
    assert backend.enqueue([unique("k")], now=at(2))[0].created


def test_cancel_of_a_reserved_lock_holder_lets_the_next_one_run(backend: Backend) -> None:
    holder, waiter = enqueue(backend, [locked("k"), locked("k")], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    assert ids_of(backend.reserve(worker, [], 5, now=at(1))) == [holder]
    backend.cancel(holder, now=at(2), by="me")
    assert backend.mark_started(worker, [holder], now=at(3)) == []  # the worker skips it
    assert backend.cancel_requests(worker) == []  # nothing to kill: it never started
    assert ids_of(backend.reserve(worker, [], 5, now=at(4))) == [waiter]
    assert kinds(backend, holder) == ["enqueued", "reserved", "cancelled"]


def test_cancel_requests_name_only_this_workers_running_jobs(backend: Backend) -> None:
    a, b, c, d = enqueue(backend, [new_job() for _ in range(4)], now=T0)
    one = backend.register_worker(worker_info("one"), now=T0)
    two = backend.register_worker(worker_info("two"), now=T0)
    start(backend, one, a, at(1))
    start(backend, one, b, at(1))
    start(backend, two, c, at(1))
    [reserved] = backend.reserve(one, [], 1, now=at(1))
    assert reserved.id == d
    for job_id in (a, c, d):
        backend.cancel(job_id, now=at(2), by="me")
    assert backend.cancel_requests(one) == [a]
    assert backend.cancel_requests(two) == [c]
    assert must_get(backend, d).status == "cancelled"  # reserved: cancelled at once
    assert must_get(backend, b).cancel_requested_at is None


def test_an_attempt_that_fails_after_a_cancel_request_is_not_retried(backend: Backend) -> None:
    # The worker's retry policy saw max_attempts=3 when it reserved the job; the cancel
    # request came later. The job must not come back.
    [job_id] = enqueue(backend, [new_job(max_attempts=3)], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    running = start(backend, worker, job_id, at(1))
    backend.cancel(job_id, now=at(2), by="me")
    assert backend.finish(worker, [failed(running, at(3), retry_at=at(4))], now=at(3)) == []
    job = must_get(backend, job_id)
    assert (job.status, job.finished_at) == ("failed", at(3))
    assert kinds(backend, job_id)[-2:] == ["cancel_requested", "failed"]
    assert backend.reserve(worker, [], 10, now=at(10)) == []


def test_an_attempt_interrupted_after_a_cancel_request_ends_cancelled(backend: Backend) -> None:
    [job_id] = enqueue(backend, [new_job(max_attempts=3)], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    running = start(backend, worker, job_id, at(1))
    backend.cancel(job_id, now=at(2), by="me")
    outcome = Outcome(job_id, running.attempts, "interrupted", at(3), detail={"reason": "x"})
    assert backend.finish(worker, [outcome], now=at(3)) == []
    job = must_get(backend, job_id)
    assert (job.status, job.finished_at) == ("cancelled", at(3))
    assert kinds(backend, job_id)[-2:] == ["cancel_requested", "cancelled"]
    assert backend.reserve(worker, [], 10, now=at(10)) == []


def test_a_worker_lost_after_a_cancel_request_does_not_retry_the_job(backend: Backend) -> None:
    [job_id] = enqueue(backend, [new_job(max_attempts=3)], now=T0)
    worker = backend.register_worker(worker_info(lease_seconds=5), now=T0)
    start(backend, worker, job_id, at(1))
    backend.cancel(job_id, now=at(2), by="me")
    assert backend.recover_lost(now=at(10)) == [RecoveredJob(job_id, worker, "running", "failed")]
    assert must_get(backend, job_id).status == "failed"


def test_a_job_retried_after_a_cancel_while_running_is_not_killed_again(
    backend: Backend,
) -> None:
    [job_id] = enqueue(backend, [new_job()], now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    running = start(backend, worker, job_id, at(1))
    backend.cancel(job_id, now=at(2), by="me")
    backend.finish(worker, [cancelled_outcome(running, at(3))], now=at(3))
    retried = backend.retry(job_id, now=at(4), by="me")
    assert (retried.status, retried.cancel_requested_at) == ("queued", None)
    again = start(backend, worker, job_id, at(5))
    assert again.attempts == 2
    assert backend.cancel_requests(worker) == []  # a new attempt is not the cancelled one
    backend.finish(worker, [succeeded(again, at(6))], now=at(6))
    assert must_get(backend, job_id).status == "succeeded"


# -- schedules: storing them -------------------------------------------------------------------


EVERY_MINUTE = Every(60.0)


def schedule(
    name: str = "kpi:42:refresh", spec: Cron | Every = EVERY_MINUTE, **changes: Any
) -> ScheduleDef:
    return replace(ScheduleDef(name=name, task="kpi.refresh", spec=spec), **changes)


def make_job(record: ScheduleRecord, due: datetime) -> NewJob:
    """What a worker's app does: the schedule's task call, with its arguments."""
    definition = record.definition
    return NewJob(
        task=definition.task,
        queue=definition.queue or "default",
        args_json=definition.args_json,
        kwargs_json=definition.kwargs_json,
        ref=definition.ref,
        priority=definition.priority or 0,
        max_attempts=1,
        timeout=None,
        run_at=None,
    )


def fire(
    backend: Backend, now: datetime, worker_id: int | None = None, **options: Any
) -> list[Tick]:
    return backend.fire_due_schedules(
        now=now, worker_id=worker_id, make_job=options.get("make_job", make_job)
    )


def test_save_and_get_a_schedule(backend: Backend) -> None:
    definition = schedule(
        "kpi:42:refresh",
        Every(300.0),
        args_json="[42]",
        kwargs_json='{"full":true}',
        ref=Ref("kpi", "42"),
        queue="kpis",
        priority=7,
        catch_up="all",
        skip_if_running=True,
        source="code",
    )
    saved = backend.save_schedule(definition, now=T0)
    assert saved == ScheduleRecord(
        definition=definition,
        paused=False,
        anchor=T0,
        next_due_at=at(300),
        last_due_at=None,
        last_job_id=None,
        created_at=T0,
        updated_at=T0,
    )
    assert backend.get_schedule("kpi:42:refresh") == saved
    cron = backend.save_schedule(schedule("report", Cron("0 6 * * *")), now=T0)
    assert cron.next_due_at == T0.replace(hour=6, minute=0, second=0, microsecond=0)
    assert cron.definition.spec == Cron("0 6 * * *")
    assert (cron.definition.ref, cron.definition.queue, cron.definition.priority) == (None,) * 3
    assert backend.get_schedule("nope") is None


def test_list_schedules_by_name(backend: Backend) -> None:
    assert backend.list_schedules() == []
    for name in ("website:9", "kpi:10", "kpi:9"):
        backend.save_schedule(schedule(name), now=T0)
    assert [record.name for record in backend.list_schedules()] == ["kpi:10", "kpi:9", "website:9"]


def test_saving_an_existing_name_is_refused_unless_replacing(backend: Backend) -> None:
    first = backend.save_schedule(schedule(args_json="[1]"), now=T0)
    with pytest.raises(ConfigurationError) as caught:
        backend.save_schedule(schedule(args_json="[2]"), now=at(1))
    assert "'kpi:42:refresh' already exists" in str(caught.value)
    assert backend.get_schedule(first.name) == first


def test_replacing_with_the_same_timing_keeps_the_schedules_place(backend: Backend) -> None:
    backend.save_schedule(schedule(), now=T0)
    fire(backend, at(60))
    backend.set_schedule_paused("kpi:42:refresh", True, now=at(70))
    replaced = backend.save_schedule(
        schedule(args_json="[2]", priority=3), now=at(90), replace=True
    )
    assert (replaced.anchor, replaced.next_due_at, replaced.last_due_at) == (T0, at(120), at(60))
    assert replaced.paused  # the paused flag stays
    assert (replaced.definition.args_json, replaced.definition.priority) == ("[2]", 3)
    assert (replaced.created_at, replaced.updated_at) == (T0, at(90))
    assert len(backend.list_ticks("kpi:42:refresh")) == 1  # and the ledger


def test_replacing_with_a_new_timing_counts_from_now(backend: Backend) -> None:
    backend.save_schedule(schedule(), now=T0)
    replaced = backend.save_schedule(schedule(spec=Every(30.0)), now=at(50), replace=True)
    assert (replaced.anchor, replaced.next_due_at) == (at(50), at(80))
    assert [t.due_at for t in fire(backend, at(80))] == [at(80)]


def test_concurrent_saves_of_one_schedule(
    backend: Backend, dsn: str, backend_target: BackendTarget, tmp_path: Path
) -> None:
    """Every worker stores the code's schedules at start, possibly all at once."""

    def save(index: int) -> str:
        own = backend_target.open(dsn)
        try:
            own.save_schedule(schedule(source="code"), now=T0, replace=True)
            try:
                own.save_schedule(schedule("once"), now=T0)
            except ConfigurationError:
                return "refused"
            return "saved"
        finally:
            own.close()

    results = run_forked(6, save, tmp_path)
    assert sorted(results) == ["refused"] * 5 + ["saved"]
    assert [r.name for r in backend.list_schedules()] == ["kpi:42:refresh", "once"]
    assert backend.get_schedule("kpi:42:refresh").next_due_at == at(60)  # type: ignore[union-attr]


def test_pause_and_resume(backend: Backend) -> None:
    backend.save_schedule(schedule(), now=T0)
    paused = backend.set_schedule_paused("kpi:42:refresh", True, now=at(30))
    assert (paused.paused, paused.next_due_at, paused.updated_at) == (True, at(60), at(30))
    assert fire(backend, at(1000)) == []  # paused: nothing fires, nothing is missed
    assert backend.list_ticks("kpi:42:refresh") == []

    resumed = backend.set_schedule_paused("kpi:42:refresh", False, now=at(1000))
    # Ticks while paused are not caught up; the next one is on the anchor's grid.
    assert (resumed.paused, resumed.next_due_at) == (False, at(1020))
    assert backend.get_schedule("kpi:42:refresh") == resumed
    assert fire(backend, at(1010)) == []
    [tick] = fire(backend, at(1020))
    assert (tick.due_at, tick.outcome) == (at(1020), "fired")
    assert backend.list_ticks("kpi:42:refresh") == [tick]


def test_pausing_or_resuming_twice_changes_no_timing(backend: Backend) -> None:
    backend.save_schedule(schedule(), now=T0)
    assert backend.set_schedule_paused("kpi:42:refresh", False, now=at(500)).next_due_at == at(60)
    backend.set_schedule_paused("kpi:42:refresh", True, now=at(10))
    assert backend.set_schedule_paused("kpi:42:refresh", True, now=at(500)).next_due_at == at(60)


def test_pausing_an_unknown_schedule(backend: Backend) -> None:
    with pytest.raises(ScheduleNotFound, match="no schedule named 'nope'"):
        backend.set_schedule_paused("nope", True, now=T0)
    assert backend.list_schedules() == []


def test_remove_a_schedule_keeps_its_ledger(backend: Backend) -> None:
    backend.save_schedule(schedule(), now=T0)
    backend.save_schedule(schedule("other"), now=T0)
    [tick] = [t for t in fire(backend, at(60)) if t.schedule == "kpi:42:refresh"]
    assert backend.remove_schedule("kpi:42:refresh") is True
    assert backend.remove_schedule("kpi:42:refresh") is False
    assert backend.get_schedule("kpi:42:refresh") is None
    assert [r.name for r in backend.list_schedules()] == ["other"]
    assert backend.list_ticks("kpi:42:refresh") == [tick]
    assert [t.schedule for t in fire(backend, at(120))] == ["other"]


# -- schedules: firing ---------------------------------------------------------------------------


def test_an_interval_tick_fires_one_job_once(backend: Backend) -> None:
    definition = schedule(args_json="[42]", ref=Ref("kpi", "42"), queue="kpis", priority=4)
    backend.save_schedule(definition, now=T0)
    worker = backend.register_worker(worker_info(), now=T0)
    assert fire(backend, at(59.999999), worker) == []

    [tick] = fire(backend, at(60.5), worker)
    assert (tick.schedule, tick.due_at, tick.outcome, tick.reason) == (
        "kpi:42:refresh",
        at(60),
        "fired",
        None,
    )
    assert (tick.recorded_at, tick.worker_id) == (at(60.5), worker)
    job = must_get(backend, tick.job_id)  # type: ignore[arg-type]
    assert (job.task, job.args, job.ref, job.queue, job.priority) == (
        "kpi.refresh",
        [42],
        Ref("kpi", "42"),
        "kpis",
        4,
    )
    assert (job.status, job.created_at, job.run_at) == ("queued", at(60.5), at(60.5))
    assert kinds(backend, job.id) == ["enqueued"]

    # The same now again, or any time before the next tick: nothing new.
    assert fire(backend, at(60.5), worker) == []
    assert fire(backend, at(119), None) == []
    record = backend.get_schedule("kpi:42:refresh")
    assert record is not None
    assert (record.next_due_at, record.last_due_at, record.last_job_id) == (at(120), at(60), job.id)
    assert backend.list_ticks("kpi:42:refresh") == [tick]

    [second] = fire(backend, at(120), None)
    assert (second.due_at, second.worker_id) == (at(120), None)
    assert second.job_id not in (None, job.id)
    assert job_count(backend) == 2
    assert backend.list_ticks("kpi:42:refresh") == [second, tick]  # newest first


def test_a_cron_tick_fires_at_its_minute(backend: Backend) -> None:
    backend.save_schedule(schedule("five", Cron("*/5 * * * *")), now=T0)  # T0 is 05:06:07
    due = T0.replace(minute=10, second=0, microsecond=0)
    assert backend.get_schedule("five").next_due_at == due  # type: ignore[union-attr]
    assert fire(backend, due - timedelta(microseconds=1)) == []
    [tick] = fire(backend, due)
    assert (tick.due_at, tick.outcome) == (due, "fired")
    assert fire(backend, due + timedelta(minutes=4, seconds=59)) == []
    [nxt] = fire(backend, due + timedelta(minutes=5))
    assert nxt.due_at == due + timedelta(minutes=5)
    assert len({tick.job_id, nxt.job_id}) == 2


def test_several_schedules_fire_in_one_call(backend: Backend) -> None:
    backend.save_schedule(schedule("a", Every(10.0)), now=T0)
    backend.save_schedule(schedule("b", Every(20.0)), now=T0)
    backend.save_schedule(schedule("c", Every(90.0)), now=T0)
    ticks = fire(backend, at(20))
    assert sorted((t.schedule, t.due_at, t.outcome) for t in ticks) == [
        ("a", at(10), "missed"),
        ("a", at(20), "fired"),
        ("b", at(20), "fired"),
    ]
    assert job_count(backend) == 2


def test_catch_up_latest_after_downtime(backend: Backend) -> None:
    backend.save_schedule(schedule(), now=T0)  # catch_up="latest" is the default
    ticks = fire(backend, at(330))
    fired = [t for t in ticks if t.outcome == "fired"]
    missed = [t for t in ticks if t.outcome == "missed"]
    assert [t.due_at for t in fired] == [at(300)]
    assert sorted(t.due_at for t in missed) == [at(60), at(120), at(180), at(240)]
    assert all(t.job_id is None and "catch_up=latest" in (t.reason or "") for t in missed)
    assert job_count(backend) == 1
    ledger = backend.list_ticks("kpi:42:refresh")
    assert [(t.due_at, t.outcome) for t in ledger] == [
        (at(300), "fired"), (at(240), "missed"), (at(180), "missed"), (at(120), "missed"),
        (at(60), "missed"),
    ]  # fmt: skip
    assert backend.get_schedule("kpi:42:refresh").next_due_at == at(360)  # type: ignore[union-attr]


def test_catch_up_all_after_downtime(backend: Backend) -> None:
    backend.save_schedule(schedule(catch_up="all"), now=T0)
    ticks = fire(backend, at(330))
    assert [(t.due_at, t.outcome) for t in ticks] == [(at(60 * k), "fired") for k in range(1, 6)]
    job_ids = [t.job_id for t in ticks]
    assert len(set(job_ids)) == 5 and None not in job_ids
    assert job_count(backend) == 5
    assert backend.get_schedule("kpi:42:refresh").last_job_id == max(job_ids)  # type: ignore
    assert fire(backend, at(330)) == []


def test_catch_up_none_after_downtime(backend: Backend) -> None:
    backend.save_schedule(schedule("on-time", catch_up="none"), now=T0)
    backend.save_schedule(schedule("late", Every(600.0), catch_up="none"), now=T0)
    # Woken 30 s after the latest tick of "on-time": that one is on time, the rest missed.
    ticks = fire(backend, at(330))
    assert sorted((t.due_at, t.outcome) for t in ticks) == [
        (at(60), "missed"), (at(120), "missed"), (at(180), "missed"), (at(240), "missed"),
        (at(300), "fired"),
    ]  # fmt: skip
    # Woken 90 s after the only tick of "late": nothing is on time, nothing fires.
    ticks = fire(backend, at(690))
    assert [(t.due_at, t.outcome) for t in ticks if t.schedule == "late"] == [(at(600), "missed")]
    [late] = backend.list_ticks("late")
    assert late.reason == "no worker fired it in time (catch_up=none)"
    assert backend.get_schedule("late").next_due_at == at(1200)  # type: ignore[union-attr]
    assert [t.job_id is not None for t in backend.list_ticks("on-time")].count(True) == 2
    assert job_count(backend) == 2


def test_a_long_downtime_is_recorded_up_to_the_limit(backend: Backend) -> None:
    backend.save_schedule(schedule(spec=Every(1.0)), now=T0)
    now = at(3 * MAX_CATCH_UP + 0.5)
    ticks = fire(backend, now)
    assert len(ticks) == MAX_CATCH_UP
    [fired] = [t for t in ticks if t.outcome == "fired"]
    assert fired.due_at == at(3 * MAX_CATCH_UP)  # the latest due time, however long it was
    assert job_count(backend) == 1
    assert backend.get_schedule("kpi:42:refresh").next_due_at == at(3 * MAX_CATCH_UP + 1)  # type: ignore
    assert len(backend.list_ticks("kpi:42:refresh", limit=None)) == MAX_CATCH_UP
    assert len(backend.list_ticks("kpi:42:refresh", limit=10)) == 10


def test_skip_if_running_records_the_skipped_ticks(backend: Backend) -> None:
    backend.save_schedule(schedule(skip_if_running=True), now=T0)
    backend.save_schedule(schedule("overlap"), now=T0)  # without: fires anyway
    worker = backend.register_worker(worker_info(), now=T0)
    [first] = [t for t in fire(backend, at(60)) if t.schedule == "kpi:42:refresh"]
    job_id = first.job_id
    assert job_id is not None

    [queued] = [t for t in fire(backend, at(120)) if t.schedule == "kpi:42:refresh"]
    assert (queued.outcome, queued.job_id) == ("skipped", None)
    assert queued.reason == f"previous job {job_id} is still queued"
    [claimed] = [j for j in backend.reserve(worker, [], 10, now=at(121)) if j.id == job_id]
    [running] = backend.mark_started(worker, [claimed.id], now=at(121))
    [busy] = [t for t in fire(backend, at(180)) if t.schedule == "kpi:42:refresh"]
    assert (busy.outcome, busy.reason) == ("skipped", f"previous job {job_id} is still running")

    backend.finish(worker, [succeeded(running, at(200))], now=at(200))
    [again] = [t for t in fire(backend, at(240)) if t.schedule == "kpi:42:refresh"]
    assert again.outcome == "fired" and again.job_id not in (None, job_id)
    record = backend.get_schedule("kpi:42:refresh")
    assert record is not None
    assert (record.last_due_at, record.last_job_id) == (at(240), again.job_id)
    assert [t.outcome for t in backend.list_ticks("kpi:42:refresh")] == [
        "fired", "skipped", "skipped", "fired",
    ]  # fmt: skip
    assert [t.outcome for t in backend.list_ticks("overlap")] == ["fired"] * 4


def test_a_unique_periodic_job_still_active_makes_the_tick_skipped(backend: Backend) -> None:
    backend.save_schedule(schedule(), now=T0)

    def unique_job(record: ScheduleRecord, due: datetime) -> NewJob:
        return make_job(record, due)._replace(unique_key="kpi:42")

    [first] = fire(backend, at(60), make_job=unique_job)
    assert first.outcome == "fired" and first.job_id is not None
    [second] = fire(backend, at(120), make_job=unique_job)
    assert (second.outcome, second.job_id) == ("skipped", first.job_id)
    assert second.reason == f"job {first.job_id} with the same unique key is still active"
    assert job_count(backend) == 1
    assert [(t.outcome, t.job_id) for t in backend.list_ticks("kpi:42:refresh")] == [
        ("skipped", first.job_id), ("fired", first.job_id),
    ]  # fmt: skip


def test_skip_if_running_with_catch_up_all_fires_only_the_first(backend: Backend) -> None:
    backend.save_schedule(schedule(skip_if_running=True, catch_up="all"), now=T0)
    ticks = fire(backend, at(180))
    assert [t.outcome for t in ticks] == ["fired", "skipped", "skipped"]
    assert ticks[1].reason == f"previous job {ticks[0].job_id} is still queued"
    assert job_count(backend) == 1


def test_a_process_that_does_not_know_the_task_leaves_the_schedule_alone(
    backend: Backend,
) -> None:
    backend.save_schedule(schedule(), now=T0)
    backend.save_schedule(schedule("known", task="known.task"), now=T0)
    before = backend.get_schedule("kpi:42:refresh")

    def only_known(record: ScheduleRecord, due: datetime) -> NewJob | None:
        return make_job(record, due) if record.definition.task == "known.task" else None

    ticks = fire(backend, at(60), make_job=only_known)
    assert [(t.schedule, t.outcome) for t in ticks] == [("known", "fired")]
    assert backend.get_schedule("kpi:42:refresh") == before  # still due, untouched
    assert backend.list_ticks("kpi:42:refresh") == []
    # A process that knows it fires it later, with the catch-up policy over the gap.
    ticks = fire(backend, at(150))
    assert sorted((t.schedule, t.due_at, t.outcome) for t in ticks) == [
        ("known", at(120), "fired"),
        ("kpi:42:refresh", at(60), "missed"),
        ("kpi:42:refresh", at(120), "fired"),
    ]


def test_a_job_that_cannot_be_made_is_a_skipped_tick(backend: Backend) -> None:
    backend.save_schedule(schedule(), now=T0)

    def broken(record: ScheduleRecord, due: datetime) -> NewJob:
        raise InvalidArguments("cannot enqueue kpi.refresh: missing a required argument: 'kpi_id'")

    [tick] = fire(backend, at(60), make_job=broken)
    assert (tick.outcome, tick.job_id, tick.due_at) == ("skipped", None, at(60))
    assert tick.reason == (
        "cannot make its job: cannot enqueue kpi.refresh: missing a required argument: 'kpi_id'"
    )
    assert job_count(backend) == 0
    assert backend.get_schedule("kpi:42:refresh").next_due_at == at(120)  # type: ignore
    assert fire(backend, at(60), make_job=broken) == []  # recorded once
    [fixed] = fire(backend, at(120))
    assert fixed.outcome == "fired"


def test_a_removed_schedule_does_not_fire(backend: Backend) -> None:
    backend.save_schedule(schedule(), now=T0)
    backend.remove_schedule("kpi:42:refresh")
    assert fire(backend, at(600)) == []
    assert job_count(backend) == 0


def test_firing_with_nothing_scheduled(backend: Backend) -> None:
    assert fire(backend, at(60)) == []


def test_list_ticks_of_an_unknown_schedule_is_empty(backend: Backend) -> None:
    assert backend.list_ticks("nope") == []


def test_concurrent_firing_makes_one_job_per_tick(
    backend: Backend, dsn: str, backend_target: BackendTarget, tmp_path: Path
) -> None:
    """Workers with their own connections all fire at the same instants."""
    names = [f"kpi:{n}" for n in range(8)]
    for name in names:
        backend.save_schedule(schedule(name, Every(60.0), catch_up="all"), now=T0)
    backend.save_schedule(schedule("five", Cron("*/5 * * * *"), catch_up="all"), now=T0)
    instants = [at(60 * k) for k in range(1, 6)] + [at(60 * 12)]  # the last one after a gap

    def fire_at_every_instant(index: int) -> list[list[Any]]:
        own = backend_target.open(dsn)
        try:
            worker = own.register_worker(worker_info(f"f{index}", pid=os.getpid()), now=T0)
            return [
                [t.schedule, t.due_at.isoformat(), t.outcome, t.job_id]
                for now in instants
                for t in own.fire_due_schedules(now=now, worker_id=worker, make_job=make_job)
            ]
        finally:
            own.close()

    results = run_forked(6, fire_at_every_instant, tmp_path)
    ticks = [tuple(tick) for result in results for tick in result]
    due_times = [(name, due) for name, due, _, _ in ticks]
    assert len(due_times) == len(set(due_times)), "a due time was handled twice"
    assert {outcome for _, _, outcome, _ in ticks} == {"fired"}
    for name in names:
        assert sorted(due for n, due in due_times if n == name) == [
            at(60 * k).isoformat() for k in range(1, 13)
        ]
    five = T0.replace(minute=10, second=0, microsecond=0)  # T0 is 05:06:07; the last is 05:18
    assert sorted(due for n, due in due_times if n == "five") == [
        five.isoformat(),
        (five + timedelta(minutes=5)).isoformat(),
    ]
    job_ids = [job_id for _, _, _, job_id in ticks]
    assert len(set(job_ids)) == len(job_ids) == job_count(backend) == 8 * 12 + 2
    ledger = {
        (t.schedule, t.due_at.isoformat(), t.job_id)
        for name in [*names, "five"]
        for t in backend.list_ticks(name, limit=None)
    }
    assert ledger == {(name, due, job_id) for name, due, _, job_id in ticks}


def test_a_schedule_on_business_days_is_stored_and_fires_only_on_them(backend: Backend) -> None:
    from tasktrail.schedule import parse_spec

    spec = parse_spec(cron="0 18 * * *", calendar="DE", closed_days=["2026-12-29"])
    wednesday = datetime(2026, 12, 23, 19, tzinfo=T0.tzinfo)
    saved = backend.save_schedule(schedule("close-books", spec, catch_up="all"), now=wednesday)
    assert backend.get_schedule("close-books") == saved
    assert saved.definition.spec == spec and saved.definition.calendar is not None
    assert saved.next_due_at == datetime(2026, 12, 24, 18, tzinfo=T0.tzinfo)
    assert [t.date().isoformat() for t in saved.upcoming(4)] == [
        "2026-12-24", "2026-12-28", "2026-12-30", "2026-12-31",
    ]  # fmt: skip
    assert saved.to_dict()["calendar"]["country"] == "DE"
    # a week later, every due tick fires: none on the holidays, the weekend, the 29th
    ticks = fire(backend, datetime(2026, 12, 31, 19, tzinfo=T0.tzinfo))
    assert sorted(t.due_at.date().isoformat() for t in ticks if t.outcome == "fired") == [
        "2026-12-24", "2026-12-28", "2026-12-30", "2026-12-31",
    ]  # fmt: skip
    assert backend.get_schedule("close-books").next_due_at.date().isoformat() == "2027-01-04"  # type: ignore[union-attr]
