"""When a busy child is given its next job (JobFlow.ahead, room, next_refill, dispatch).

No database and no processes: the children are socket pairs that nothing reads, and
time is passed in, or set on the assignments, so nothing here sleeps.
"""

from __future__ import annotations

import math
import selectors
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

import tasktrail
from tasktrail.backends.base import Exchange
from tasktrail.job import HeldJob
from tasktrail.worker.config import WorkerConfig
from tasktrail.worker.flow import JobFlow
from tasktrail.worker.pool import Assignment, Child, ChildPool
from tasktrail.worker.protocol import FrameReader

app = tasktrail.App("sqlite:///:memory:")


@app.task(name="short")
def short() -> None:
    return None


@app.task(name="long")
def long() -> None:
    return None


def held(job_id: int, task: str) -> HeldJob:
    return HeldJob(
        id=job_id, task=task, queue="default", status="running", ref=None, priority=0,
        args_json="[]", kwargs_json="{}", attempts=1, max_attempts=1, timeout=None,
        worker_id=1,
    )  # fmt: skip


#: The children's ends of their sockets, by pid: what the supervisor sent them.
PEERS: dict[int, socket.socket] = {}


@pytest.fixture
def flow() -> Iterator[JobFlow]:
    selector = selectors.DefaultSelector()
    pool = ChildPool(app, selector, None)
    ends: list[socket.socket] = []
    for pid in (101, 102):
        ours, theirs = socket.socketpair()
        ends += [ours, theirs]
        pool.children[pid] = Child(pid=pid, sock=ours)
        PEERS[pid] = theirs
    config = WorkerConfig(processes=2, reserve=64)
    flow = JobFlow(app, backend=None, pool=pool, config=config, db=_no_db, name="test")  # type: ignore[arg-type]
    flow._rtt = 0.005  # a window of 10 ms
    try:
        yield flow
    finally:
        for end in ends:
            end.close()
        selector.close()


def _no_db(what: str, call: Any) -> None:
    raise AssertionError(f"no database here ({what})")


def learn(flow: JobFlow, task: str, runtime: float, times: int = 1) -> None:
    """What on_message does with a finished job's run time."""
    for _ in range(times):
        flow._runtime = runtime
        estimate = flow._estimates.get(task, runtime)
        flow._estimates[task] = estimate + 0.2 * (runtime - estimate)


def give(child: Child, *jobs: tuple[int, str], started: float | None) -> None:
    for job_id, task in jobs:
        child.inflight.append(Assignment(job=held(job_id, task)))
    child.inflight[0].started = started


def children(flow: JobFlow) -> tuple[Child, Child]:
    first, second = flow.pool.children.values()
    return first, second


def test_an_idle_child_begins_at_once(flow):
    first, _ = children(flow)
    assert flow.ahead(first, now=100.0) == 0.0


def test_nothing_is_queued_behind_a_job_of_a_task_not_seen_yet(flow):
    first, second = children(flow)
    learn(flow, "short", 0.0001)
    give(first, (1, "long"), started=100.0)
    give(second, (2, "long"), started=100.0)
    assert flow.ahead(first, now=100.0) == math.inf
    assert flow.room() == 0
    assert flow.next_refill(100.0) is None


def test_a_quick_job_gets_its_follower_just_before_it_is_expected_to_end(flow):
    flow._rtt = 0.001  # a window of 2 ms
    first, second = children(flow)
    learn(flow, "quick", 0.008, times=3)
    give(first, (1, "quick"), started=100.0)
    give(second, (2, "quick"), started=100.0)
    assert flow.ahead(first, now=100.0) == pytest.approx(0.008)
    # Not while most of its run is ahead of it...
    assert flow.ahead(first, now=100.004) == pytest.approx(0.004)
    # ...but within a window (two round trips, 2 ms) of its expected end.
    assert flow.ahead(first, now=100.007) == pytest.approx(0.001)
    # The supervisor is told when to wake up for it.
    flow.more_expected = True
    assert flow.next_refill(100.0) == pytest.approx(100.006)
    flow.more_expected = False
    assert flow.next_refill(100.0) is None  # nothing to give: no wake-up


def test_a_job_past_its_expected_end_gets_nothing_behind_it(flow):
    flow._rtt = 0.001
    first, _ = children(flow)
    learn(flow, "quick", 0.008, times=3)
    give(first, (1, "quick"), started=100.0)
    # A little late is a busy supervisor, not a long job...
    assert flow.ahead(first, now=100.009) == 0.0
    # ...but past that it may run for any time.
    assert flow.ahead(first, now=100.02) == math.inf


def test_a_longer_jobs_follower_is_claimed_ahead_but_waits_for_a_free_child(flow):
    # A 50 ms job may run long this time (a lock it waits for, a slow query): a job
    # queued behind it would wait for all of it, holding its own lock, while another
    # child is free. Its follower is claimed as it is about to end, and handed to
    # whichever child is free first.
    flow._rtt = 0.5  # a window of a second: the test does not race the clock
    first, second = children(flow)
    learn(flow, "kpi", 0.05, times=3)
    about_to_end = time.monotonic() - 0.045
    give(first, (1, "kpi"), started=about_to_end)
    give(second, (2, "kpi"), started=about_to_end)
    assert flow.room() >= 2  # claim their followers now...
    assert not flow.takes_more(first) and not flow.takes_more(second)
    flow.ready.append(held(3, "kpi"))
    assert not flow.can_dispatch()
    flow.dispatch()  # ...but do not queue them behind the running jobs
    assert [job.id for job in flow.ready] == [3]
    assert [a.job.id for a in first.inflight] == [1]
    assert [a.job.id for a in second.inflight] == [2]
    second.inflight.clear()  # the second child's job ended first
    assert flow.can_dispatch()
    flow.dispatch()
    assert [a.job.id for a in second.inflight] == [3]
    assert not flow.ready


def test_an_idle_child_gets_one_job_of_a_longer_task_not_two(flow):
    first, second = children(flow)
    flow._rtt = 0.05  # a slow round trip (a busy machine): a window of 100 ms
    learn(flow, "kpi", 0.05, times=3)
    give(second, (1, "kpi"), started=100.0)
    flow.ready.extend([held(2, "kpi"), held(3, "kpi")])
    flow.dispatch()
    assert [a.job.id for a in first.inflight] == [2]
    assert [a.job.id for a in second.inflight] == [1]
    assert [job.id for job in flow.ready] == [3]


def test_a_child_holds_several_short_jobs_and_waits_for_their_sum(flow):
    first, _ = children(flow)
    learn(flow, "short", 0.001, times=3)
    give(first, *[(n, "short") for n in range(1, 6)], started=100.0)
    assert flow.ahead(first, now=100.0) == pytest.approx(0.005)


def test_dispatch_puts_short_jobs_on_the_child_not_running_a_long_one(flow):
    first, second = children(flow)
    learn(flow, "short", 0.0001, times=3)
    assert flow.depth() > 4
    flow.ready.extend([held(1, "long"), *(held(n, "short") for n in range(2, 6))])
    flow.dispatch()
    holding = sorted(
        ([a.job.id for a in child.inflight] for child in (first, second)), key=lambda ids: ids[0]
    )
    assert holding == [[1], [2, 3, 4, 5]]
    assert not flow.ready
    # One message per child, naming what it holds.
    for child in (first, second):
        [message] = FrameReader().feed(PEERS[child.pid].recv(1 << 16))
        assert [job["job"] for job in message["jobs"]] == [a.job.id for a in child.inflight]


def finish(flow: JobFlow, child: Child, job_id: int, gap: float | None) -> None:
    """A child's outcome message for its one job, as child_main sends it."""
    give(child, (job_id, "short"), started=time.monotonic())
    message: dict[str, Any] = {"job": job_id, "ok": True, "result": "null", "runtime": 0.00001}
    if gap is not None:
        message["gap"] = gap
    flow.on_message(child, message)


def test_how_many_short_jobs_a_child_holds_follows_what_a_job_costs_it(flow):
    # A child's own cost per job (its messages, the JSON) is what it reports as `gap`,
    # from one job's end to the next one's start: with 10 µs jobs, what a child gets
    # through in two round trips depends on it more than on the jobs.
    flow._rtt = 0.0005
    first, _ = children(flow)
    finish(flow, first, 1, gap=None)  # it waited for this one: nothing measured
    assumed = flow.depth()
    assert assumed == 1 + math.ceil(0.001 / (0.00001 + 0.0002))  # the default guess, 6
    for job_id in range(2, 40):
        finish(flow, first, job_id, gap=0.00004)
    quick = flow.depth()
    assert quick == 1 + math.ceil(0.001 / (0.00001 + 0.00004))  # 21, within 32 a process
    for job_id in range(40, 80):
        finish(flow, first, job_id, gap=0.001)  # a loaded machine: a millisecond each
    assert flow.depth() == 2
    assert len(flow.pending) == 79  # every outcome recorded, gap or not


def test_jobs_that_cost_nothing_measurable_still_give_a_bounded_depth(flow):
    flow._runtime, flow._overhead = 0.0, 0.0  # what smoothing towards zeros ends at
    assert flow.depth() == flow.config.reserve_limit // flow.config.processes


class RecordingBackend:
    """Stands in for the database: records what each exchange asked for, claims nothing."""

    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []

    def exchange(self, worker_id: int, **request: Any) -> Exchange:
        self.asked.append(request)
        return Exchange(rejected=[], started=[], reserved=[])


def test_the_buffer_holds_one_job_per_process_whatever_the_reserve(flow):
    # Jobs of a task not seen yet (depth 1) and a reserve of 64: each idle child gets a
    # job started, and one per process more is buffered, not the rest of the reserve.
    backend = RecordingBackend()
    flow.backend = backend
    flow._db = lambda what, call: call()
    flow.exchange(1, claiming=True)
    [asked] = backend.asked
    assert (asked["claim"], asked["start_claimed"]) == (4, 2)

    # Both children busy with long jobs and two jobs buffered: nothing more is claimed.
    first, second = children(flow)
    give(first, (1, "long"), started=time.monotonic())
    give(second, (2, "long"), started=time.monotonic())
    flow.buffer.extend([held(3, "long"), held(4, "long")])
    flow.more_expected = True
    flow.exchange(1, claiming=True)
    assert len(backend.asked) == 1
    # With one of them gone (handed to a child), the buffer is topped up by one.
    flow.buffer.pop()
    flow.exchange(1, claiming=True)
    assert (backend.asked[-1]["claim"], backend.asked[-1]["start_claimed"]) == (1, 0)
