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
from tasktrail.worker.flow import GIVEN_BACK, HOLD_FLOOR, HOLD_LIMIT, JobFlow
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


def test_a_longer_jobs_follower_is_claimed_ahead_but_waits_for_its_child_to_be_free(flow):
    # A 50 ms job may run long this time (a lock it waits for, a slow query): a job
    # queued behind it would wait for all of it, holding its own lock, while another
    # child is free. Its follower is claimed for it as it is about to end, and sent to it
    # once it is free.
    flow._rtt = 0.5  # a window of a second: the test does not race the clock
    first, second = children(flow)
    learn(flow, "kpi", 0.05, times=3)
    about_to_end = time.monotonic() - 0.045
    give(first, (1, "kpi"), started=about_to_end)
    give(second, (2, "kpi"), started=about_to_end)
    assert sorted(c.pid for c in flow.plan()) == [101, 102]  # claim their followers now...
    flow.place(first, [held(3, "kpi")], time.monotonic())
    assert not flow.can_dispatch()
    flow.dispatch()  # ...but do not send them behind the running jobs
    assert [(a.job.id, a.sent) for a in first.inflight] == [(1, True), (3, False)]
    flow.pool.complete_head(first, time.monotonic())  # its job ended
    assert flow.can_dispatch()
    flow.dispatch()
    assert [(a.job.id, a.sent) for a in first.inflight] == [(3, True)]
    assert first.assignment is not None and first.assignment.started is not None


def test_a_follower_whose_child_stays_busy_is_given_back(flow):
    # The job it was claimed behind runs long this time: after the task's usual run
    # time (a second at most) the follower goes back to the queue, attempt given back,
    # for any worker with a free process; nothing more is claimed for that child.
    first, _ = children(flow)
    learn(flow, "kpi", 0.3, times=3)
    now = time.monotonic()
    give(first, (1, "kpi"), started=now - 0.29)
    flow.place(first, [held(2, "kpi")], now)
    assert flow.hold("kpi") == pytest.approx(0.3)
    assert flow.next_expiry() == pytest.approx(now + 0.3)
    flow.give_back_late(now + 0.29)
    assert len(first.inflight) == 2 and not flow.pending
    flow.give_back_late(now + 0.3)
    assert [a.job.id for a in first.inflight] == [1]
    [(_, outcome)] = flow.pending
    assert (outcome.job_id, outcome.kind) == (2, "interrupted")
    assert outcome.detail["reason"] == GIVEN_BACK
    assert first not in flow.plan(now=now + 0.3)  # it overran: nothing behind it
    assert flow.next_expiry() is None


def test_how_long_a_planned_job_may_wait_for_its_child(flow):
    learn(flow, "long", 30.0)
    learn(flow, "short", 0.0001)
    assert flow.hold("long") == HOLD_LIMIT
    assert flow.hold("unknown") == HOLD_LIMIT
    assert flow.hold("short") == HOLD_FLOOR  # giving it back would cost more


def test_an_idle_child_gets_one_job_of_a_longer_task_not_two(flow):
    first, second = children(flow)
    flow._rtt = 0.001  # a window of 2 ms
    learn(flow, "kpi", 0.05, times=3)
    give(second, (1, "kpi"), started=time.monotonic())
    # none is queued behind a 50 ms job: one for the idle child, and none yet for the
    # busy one (its follower comes as its job is about to end)
    assert flow.depth() == 1
    assert flow.plan() == [first]


def test_short_jobs_claimed_for_a_child_go_before_a_long_one(flow):
    first, _ = children(flow)
    learn(flow, "short", 0.0001, times=3)
    now = time.monotonic()
    flow.place(first, [held(1, "long"), held(2, "short")], now)
    flow.place(first, [held(3, "short")], now)
    assert [a.job.id for a in first.inflight] == [2, 3, 1]
    flow.dispatch()
    assert all(a.sent for a in first.inflight)  # the long one last, behind short ones
    [message] = FrameReader().feed(PEERS[first.pid].recv(1 << 16))
    assert [job["job"] for job in message["jobs"]] == [2, 3, 1]


def test_a_child_holds_several_short_jobs_and_waits_for_their_sum(flow):
    first, _ = children(flow)
    learn(flow, "short", 0.001, times=3)
    give(first, *[(n, "short") for n in range(1, 6)], started=100.0)
    assert flow.ahead(first, now=100.0) == pytest.approx(0.005)


def test_claims_go_to_the_children_in_turns_soonest_first(flow):
    first, _ = children(flow)
    learn(flow, "short", 0.0001, times=3)
    assert flow.depth() > 4
    give(first, (1, "short"), started=time.monotonic())
    plan = flow.plan(depth=3)
    # the idle child first, then in turns, each up to its room
    assert [c.pid for c in plan] == [102, 101, 102, 101, 102]


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


def test_a_worker_claims_only_what_its_children_begin_whatever_the_reserve(flow):
    # Jobs of a task not seen yet (depth 1) and a reserve of 64: each idle child gets a
    # job, started at once; nothing is buffered for later.
    backend = RecordingBackend()
    flow.backend = backend
    flow._db = lambda what, call: call()
    flow.exchange(1, claiming=True)
    [asked] = backend.asked
    assert (asked["claim"], asked["start_claimed"]) == (2, 2)

    # Both children busy with long jobs: nothing more is claimed, however many slots
    # the reserve has left.
    first, second = children(flow)
    give(first, (1, "long"), started=time.monotonic())
    give(second, (2, "long"), started=time.monotonic())
    flow.more_expected = True
    flow.exchange(1, claiming=True)
    assert len(backend.asked) == 1


def test_stopping_gives_back_planned_jobs_and_keeps_sent_ones(flow):
    first, second = children(flow)
    give(first, (1, "long"), started=time.monotonic())
    flow.place(first, [held(2, "long")], time.monotonic())
    flow.place(second, [held(3, "long")], time.monotonic())
    flow.give_back("shutdown")
    assert [a.job.id for a in first.inflight] == [1] and not second.inflight
    assert sorted((o.job_id, o.kind, o.detail["reason"]) for _, o in flow.pending) == [
        (2, "interrupted", "shutdown"),
        (3, "interrupted", "shutdown"),
    ]


def test_a_cancel_of_a_planned_job_ends_it_in_the_supervisor(flow):
    first, _ = children(flow)
    give(first, (1, "long"), started=time.monotonic())
    flow.place(first, [held(2, "long")], time.monotonic())
    assert not flow.cancel_planned(1)  # sent: its child is asked (see Supervisor._duties)
    assert flow.cancel_planned(2)
    [(_, outcome)] = flow.pending
    assert (outcome.job_id, outcome.kind) == (2, "cancelled")
    assert [a.job.id for a in first.inflight] == [1]


def test_a_child_that_dies_gives_back_its_planned_jobs(flow):
    first, _ = children(flow)
    give(first, (1, "long"), started=time.monotonic())
    flow.place(first, [held(2, "long")], time.monotonic())
    flow.on_exit(first, 9)  # killed by SIGKILL
    kinds = {o.job_id: o.kind for _, o in flow.pending}
    assert kinds == {1: "failed", 2: "interrupted"}
    assert not first.inflight
