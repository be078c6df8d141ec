"""Fan-in in the Backend contract: a job enqueued with ``after`` waits until every job it
names has ended, then is queued (or cancelled, by its policy), by the database in the
transaction of each one's final change. Run against every backend (the ``dsn``
fixture, which also checks every job's history); time is a parameter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tasktrail.backends import Backend, JobFilter
from tasktrail.backends.postgres.backend import COPY_FROM
from tasktrail.errors import InvalidArguments
from tasktrail.job import NewJob

from .helpers import (
    T0,
    at,
    enqueue,
    failed,
    kinds,
    must_get,
    new_job,
    run_forked,
    succeeded,
    worker_info,
)
from .targets import BackendTarget


def parents(backend: Backend, count: int) -> list[int]:
    """``count`` jobs, each in a queue of its own (``p0``, ``p1``…) so a test can run
    exactly the one it wants."""
    return enqueue(backend, [new_job("parent", i, queue=f"p{i}") for i in range(count)], now=T0)


def waiting(*after: int, policy: str = "succeeded", **options: Any) -> NewJob:
    return new_job("child", **options)._replace(after=after, after_policy=policy)


def run(backend: Backend, job_id: int, now_s: float, *, ok: bool = True, result: Any = None,
        retry: bool = False) -> None:  # fmt: skip
    """Claim ``job_id`` (through its own queue) into a new worker and end its attempt."""
    queue = must_get(backend, job_id).queue
    worker = backend.register_worker(worker_info(f"w{job_id}-{now_s}"), now=at(now_s))
    [held] = backend.exchange(
        worker, outcomes=(), start_ids=(), claim=1, start_claimed=1, queues=[queue],
        now=at(now_s),
    ).started  # fmt: skip
    assert held.id == job_id
    job = must_get(backend, job_id)
    outcome = (
        succeeded(job, at(now_s + 1), result)
        if ok
        else failed(job, at(now_s + 1), retry_at=at(now_s + 2) if retry else None)
    )
    assert backend.finish(worker, [outcome], now=at(now_s + 1)) == []


def claimable(backend: Backend, now_s: float) -> list[int]:
    worker = backend.register_worker(worker_info(f"claimer-{now_s}"), now=at(now_s))
    held = backend.reserve(worker, ["default"], 100, now=at(now_s))
    backend.release(worker, [job.id for job in held], now=at(now_s), reason="test")
    return [job.id for job in held]


def test_a_job_waits_until_every_job_it_names_has_ended_then_is_queued(backend: Backend) -> None:
    a, b = parents(backend, 2)
    [child] = enqueue(backend, [waiting(a, b)], now=at(1))
    job = must_get(backend, child)
    assert (job.status, job.waiting_for, job.after_policy) == ("waiting", 2, "succeeded")
    assert job.to_dict()["waiting_for"] == 2
    [enqueued, wait] = backend.list_events(child)
    assert (enqueued.kind, wait.kind, wait.detail) == (
        "enqueued", "waiting", {"after": [a, b], "policy": "succeeded"},
    )  # fmt: skip
    assert claimable(backend, 2) == []

    run(backend, a, 10)
    assert (must_get(backend, child).status, must_get(backend, child).waiting_for) == ("waiting", 1)
    assert claimable(backend, 12) == []

    run(backend, b, 20, result={"comments": 7})
    job = must_get(backend, child)
    assert (job.status, job.waiting_for) == ("queued", 0)
    ready = backend.list_events(child)[-1]
    assert (ready.kind, ready.at, ready.detail) == (
        "ready", at(21), {"after": b, "after_status": "succeeded"},
    )  # fmt: skip
    assert job.run_at == at(21)  # in line from when it became ready
    assert child in claimable(backend, 22)
    assert backend.after_results(child) == [
        (a, "succeeded", None),
        (b, "succeeded", {"comments": 7}),
    ]


def test_one_that_does_not_succeed_cancels_the_waiting_job_and_what_waits_for_it(
    backend: Backend,
) -> None:
    a, b = parents(backend, 2)
    [child] = enqueue(backend, [waiting(a, b)], now=at(1))
    [grandchild] = enqueue(backend, [waiting(child)], now=at(1))
    [tolerant] = enqueue(backend, [waiting(child, policy="finished")], now=at(1))

    run(backend, a, 10, ok=False)
    job = must_get(backend, child)
    assert (job.status, job.finished_at) == ("cancelled", at(11))
    assert job.error == f"cancelled: job {a} it waited for ended failed"
    cancelled = backend.list_events(child)[-1]
    assert cancelled.kind == "cancelled"
    assert cancelled.detail == {
        "after": a, "after_status": "failed", "reason": f"job {a} it waited for ended failed",
    }  # fmt: skip
    # the cascade: what waited for it is cancelled too, or released under "finished"
    assert must_get(backend, grandchild).status == "cancelled"
    assert f"job {child} " in (must_get(backend, grandchild).error or "")
    assert must_get(backend, tolerant).status == "queued"

    run(backend, b, 20)  # ends later: nothing more happens to the cancelled one
    assert kinds(backend, child) == ["enqueued", "waiting", "cancelled"]


def test_with_policy_finished_it_runs_however_they_ended(backend: Backend) -> None:
    a, b = parents(backend, 2)
    [child] = enqueue(backend, [waiting(a, b, policy="finished")], now=at(1))
    run(backend, a, 10, ok=False)
    assert must_get(backend, child).status == "waiting"
    run(backend, b, 20, result=[1, 2])
    assert must_get(backend, child).status == "queued"
    assert backend.after_results(child) == [(a, "failed", None), (b, "succeeded", [1, 2])]


def test_a_failure_that_will_be_retried_is_not_an_end(backend: Backend) -> None:
    [a] = enqueue(backend, [new_job("parent", queue="p0", max_attempts=2)], now=T0)
    [child] = enqueue(backend, [waiting(a)], now=at(1))
    run(backend, a, 10, ok=False, retry=True)
    assert must_get(backend, a).status == "queued"
    assert must_get(backend, child).status == "waiting"
    run(backend, a, 20)
    assert must_get(backend, child).status == "queued"
    assert kinds(backend, child).count("ready") == 1


def test_jobs_that_have_ended_already_release_it_at_once(backend: Backend) -> None:
    a, b = parents(backend, 2)
    run(backend, a, 10)
    run(backend, b, 20, ok=False)
    [ok_child, cancelled_child] = enqueue(backend, [waiting(a), waiting(a, b)], now=at(30))
    assert must_get(backend, ok_child).status == "queued"
    assert kinds(backend, ok_child) == ["enqueued", "waiting", "ready"]
    ready = backend.list_events(ok_child)[-1]
    assert ready.at == at(30)  # not before it existed
    assert must_get(backend, cancelled_child).status == "cancelled"
    assert kinds(backend, cancelled_child) == ["enqueued", "waiting", "cancelled"]


def test_a_job_to_wait_for_that_does_not_exist_is_refused_and_nothing_is_stored(
    backend: Backend,
) -> None:
    [a] = parents(backend, 1)
    with pytest.raises(InvalidArguments, match="after: there is no job 987654"):
        backend.enqueue([new_job(), waiting(a, 987654)], now=at(1))
    assert [job.id for job in backend.list_jobs(JobFilter())] == [a]


def test_cancelling_jobs_releases_or_cancels_those_waiting_for_them(backend: Backend) -> None:
    a, b = parents(backend, 2)
    [strict] = enqueue(backend, [waiting(a)], now=at(1))
    [tolerant] = enqueue(backend, [waiting(b, policy="finished")], now=at(1))
    [behind] = enqueue(backend, [waiting(strict, policy="finished")], now=at(1))
    backend.cancel(a, now=at(5), by="test")  # queued: cancelled at once
    assert must_get(backend, strict).status == "cancelled"
    assert must_get(backend, behind).status == "queued"
    backend.cancel(b, now=at(6), by="test")
    assert must_get(backend, tolerant).status == "queued"
    # a waiting job itself can be cancelled by a person, and retried later
    [c] = parents(backend, 1)
    [mine] = enqueue(backend, [waiting(c)], now=at(7))
    assert must_get(backend, backend.cancel(mine, now=at(8), by="me").id).status == "cancelled"
    assert backend.list_events(mine)[-1].detail["by"] == "me"
    assert backend.retry(mine, now=at(9), by="me").status == "queued"
    run(backend, c, 10)  # its job ending later changes nothing
    assert must_get(backend, mine).status == "queued"
    assert kinds(backend, mine) == ["enqueued", "waiting", "cancelled", "retried"]


def test_a_job_lost_for_good_with_its_worker_is_an_end(backend: Backend) -> None:
    [a] = enqueue(backend, [new_job("parent", queue="p0")], now=T0)
    [child] = enqueue(backend, [waiting(a, policy="finished")], now=at(1))
    worker = backend.register_worker(worker_info(lease_seconds=5), now=at(2))
    backend.exchange(
        worker, outcomes=(), start_ids=(), claim=1, start_claimed=1, queues=["p0"], now=at(2)
    )
    backend.recover_lost(now=at(60))
    assert must_get(backend, a).status == "failed"
    assert must_get(backend, child).status == "queued"


def test_every_way_of_enqueueing_can_wait(backend: Backend) -> None:
    [a] = parents(backend, 1)
    several = enqueue(backend, [waiting(a) for _ in range(3)], now=at(1))
    many = enqueue(backend, [waiting(a) for _ in range(COPY_FROM)], now=at(1))  # COPY on PG
    [unique] = enqueue(backend, [waiting(a)._replace(unique_key="kpi:3")], now=at(1))
    # a waiting job holds its unique key: the same key joins it
    [again] = backend.enqueue([waiting(a)._replace(unique_key="kpi:3")], now=at(2))
    assert (again.id, again.created) == (unique, False)
    assert kinds(backend, unique) == ["enqueued", "waiting"]
    every = [*several, *many, unique]
    assert {must_get(backend, job_id).status for job_id in every} == {"waiting"}
    run(backend, a, 10)
    assert {must_get(backend, job_id).status for job_id in every} == {"queued"}


def test_waiting_jobs_are_listed_by_status_also_below_a_job(
    backend: Backend,
) -> None:
    [a] = parents(backend, 1)
    [child] = enqueue(backend, [waiting(a)._replace(parent_id=a)], now=at(1))
    listed = backend.list_jobs(JobFilter(statuses=("waiting",)))
    assert [job.id for job in listed] == [child]
    below = backend.list_jobs(JobFilter(ids=(a,), descendants=True, statuses=("waiting",)))
    assert [job.id for job in below] == [child]


def test_parents_ending_at_once_in_many_workers_release_it_exactly_once(
    backend: Backend, dsn: str, backend_target: BackendTarget, tmp_path: Path
) -> None:
    count = 8
    ids = parents(backend, count)
    [child] = enqueue(backend, [waiting(*ids)], now=at(1))
    held = []
    for index, job_id in enumerate(ids):
        worker = backend.register_worker(worker_info(f"w{index}"), now=at(2))
        backend.exchange(
            worker, outcomes=(), start_ids=(), claim=1, start_claimed=1, queues=[f"p{index}"],
            now=at(2),
        )  # fmt: skip
        held.append((worker, must_get(backend, job_id)))

    def finish(index: int) -> list[int]:
        own = backend_target.open(dsn)
        try:
            worker, job = held[index]
            return own.finish(worker, [succeeded(job, at(3), index)], now=at(3))
        finally:
            own.close()

    assert run_forked(count, finish, tmp_path) == [[]] * count
    assert must_get(backend, child).status == "queued"
    assert kinds(backend, child) == ["enqueued", "waiting", "ready"]
    assert backend.after_results(child) == [
        (job_id, "succeeded", i) for i, job_id in enumerate(ids)
    ]


def test_jobs_enqueued_to_wait_while_it_ends_are_all_released(
    backend: Backend, dsn: str, backend_target: BackendTarget, tmp_path: Path
) -> None:
    [a] = parents(backend, 1)
    worker = backend.register_worker(worker_info(), now=at(1))
    backend.exchange(
        worker, outcomes=(), start_ids=(), claim=1, start_claimed=1, queues=["p0"], now=at(1)
    )
    running = must_get(backend, a)

    def race(index: int) -> list[int]:
        own = backend_target.open(dsn)
        try:
            if index == 0:
                own.finish(worker, [succeeded(running, at(2))], now=at(2))
                return []
            return [own.enqueue([waiting(a)], now=at(2))[0].id for _ in range(15)]
        finally:
            own.close()

    children = [job_id for result in run_forked(3, race, tmp_path) for job_id in result]
    assert len(children) == 30
    # whichever came first, none is left waiting for a job that has ended
    assert {must_get(backend, job_id).status for job_id in children} == {"queued"}


def test_it_is_released_as_of_the_last_end_even_when_that_outcome_came_first(
    backend: Backend,
) -> None:
    # Outcomes are written in batches, after the fact: the job whose outcome is written
    # last may have ended earlier than another (found by the chaos run).
    a, b = parents(backend, 2)
    [child] = enqueue(backend, [waiting(a, b)], now=at(1))
    run(backend, b, 30)  # ended at 31, written first
    run(backend, a, 20)  # ended at 21, written last: it releases the job
    ready = backend.list_events(child)[-1]
    assert (ready.kind, ready.at, must_get(backend, child).run_at) == ("ready", at(31), at(31))
