"""The app, the supervisor and its job flow read the time from one injected clock.

No database and no processes: a ManualClock is advanced instead of sleeping, the
children are socket pairs that nothing reads (their pids above any Linux pid_max, and
signals to them recorded, not sent), and the database is a stub.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest

import tasktrail
from tasktrail.app import JobHandle
from tasktrail.clock import SYSTEM_CLOCK, ManualClock
from tasktrail.errors import BackendUnavailable
from tasktrail.job import HeldJob
from tasktrail.worker.config import WorkerConfig
from tasktrail.worker.db import UNREACHABLE
from tasktrail.worker.flow import JobFlow
from tasktrail.worker.pool import Child
from tasktrail.worker.supervisor import Supervisor

from .factories import make_job

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
PID = 5_000_001  # above PID_MAX_LIMIT (2**22): no process can have it


def held(job_id: int, task: str = "kpi", timeout: float | None = None) -> HeldJob:
    return HeldJob(
        id=job_id, task=task, queue="default", status="running", ref=None, priority=0,
        args_json="[]", kwargs_json="{}", attempts=1, max_attempts=1, timeout=timeout,
        worker_id=1,
    )  # fmt: skip


@pytest.fixture
def clock() -> ManualClock:
    # a monotonic reading no real clock is near: a reading of the system's would show
    return ManualClock(now=T0, monotonic=1e9)


@pytest.fixture
def signals(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, signum: sent.append((pid, signum)))
    return sent


@pytest.fixture
def supervisor(clock: ManualClock) -> Iterator[Supervisor]:
    """A supervisor on ``clock`` with one child and its flow, as ``_open`` sets them up
    (no backend: a test that needs one sets it)."""
    app = tasktrail.App("sqlite:///:memory:", clock=clock)

    @app.task(name="kpi")
    def kpi() -> None:
        return None

    supervisor = Supervisor(app, WorkerConfig(processes=1, lease_seconds=30, kill_grace=2))
    ours, theirs = socket.socketpair()
    supervisor.pool.children[PID] = Child(pid=PID, sock=ours)
    supervisor.flow = JobFlow(
        app,
        None,
        supervisor.pool,
        supervisor.config,
        supervisor._db,
        "test",
        clock=clock,  # type: ignore[arg-type]
    )
    try:
        yield supervisor
    finally:
        ours.close()
        theirs.close()
        supervisor._selector.close()


def child_of(supervisor: Supervisor) -> Child:
    return supervisor.pool.children[PID]


def test_the_app_its_supervisor_and_their_flow_share_the_apps_clock(supervisor, clock):
    assert tasktrail.App("sqlite:///:memory:").clock is SYSTEM_CLOCK
    assert supervisor.app.clock is clock
    assert supervisor.clock is clock
    assert supervisor.flow.clock is clock


def test_a_job_is_stopped_at_its_timeout_by_the_clock(supervisor, clock, signals):
    # Sent at the clock's time, the job is due to stop 5 s later by the same clock:
    # not a moment before, SIGTERM at the deadline, SIGKILL kill_grace after it.
    child = child_of(supervisor)
    supervisor.flow.place(child, [held(1, timeout=5.0)], clock.monotonic())
    supervisor.flow.dispatch()
    assert child.assignment is not None and child.assignment.started == clock.monotonic()
    clock.advance(4.999)
    supervisor._enforce_deadlines()
    assert child.stop_reason is None and not signals
    clock.advance(0.001)
    supervisor._enforce_deadlines()
    assert child.stop_reason == "timeout"
    assert signals == [(PID, 15)]
    clock.advance(2.0)
    supervisor._enforce_deadlines()
    assert signals == [(PID, 15), (PID, 9)]


def test_a_dead_childs_job_is_timed_and_stamped_by_the_clock(supervisor, clock):
    child = child_of(supervisor)
    supervisor.flow.place(child, [held(1)], clock.monotonic())
    supervisor.flow.dispatch()
    clock.advance(2.5)
    supervisor.flow.on_exit(child, 9)  # SIGKILL
    [(_, outcome)] = supervisor.flow.pending
    assert outcome.kind == "failed"
    assert outcome.detail["runtime"] == 2.5
    assert outcome.finished_at == clock.now()


def test_a_follower_is_claimed_when_the_flows_clock_nears_the_jobs_end(supervisor, clock):
    # A 50 ms job of a task seen before: its child's next job is claimed (plan() reads
    # the flow's clock) once the job is expected to end within a window (10 ms).
    flow = supervisor.flow
    flow._rtt = 0.005
    flow._estimates["kpi"] = 0.05
    child = child_of(supervisor)
    flow.place(child, [held(1)], clock.monotonic())
    flow.dispatch()
    assert flow.plan() == []
    assert flow.next_refill(clock.monotonic()) == pytest.approx(clock.monotonic() + 0.04)
    clock.advance(0.041)
    assert flow.plan() == [child]


def test_a_failed_database_call_backs_off_on_the_clock(supervisor, clock):
    calls: list[str] = []

    def down() -> bool:
        calls.append("down")
        raise BackendUnavailable("connection refused")

    def up() -> bool:
        calls.append("up")
        return False

    assert supervisor._db("heartbeat", down) is UNREACHABLE
    # backing off (0.2 s, give or take a fifth): not even tried
    assert supervisor._db("heartbeat", up) is UNREACHABLE
    assert calls == ["down"]
    clock.advance(0.25)
    # tried again; its False is an answer, not a failure
    assert supervisor._db("heartbeat", up) is False
    assert calls == ["down", "up"]


def test_a_heartbeat_is_stamped_and_scheduled_by_the_clock(supervisor, clock):
    beats: list[datetime] = []
    reachable = True

    def heartbeat(worker_id: int, *, now: datetime) -> bool:
        if not reachable:
            raise BackendUnavailable("connection refused")
        beats.append(now)
        return True

    supervisor.backend = SimpleNamespace(heartbeat=heartbeat, wakeup_fileno=lambda: None)  # type: ignore[assignment]
    supervisor._heartbeat()
    assert beats == [T0]
    assert supervisor._next_heartbeat == clock.monotonic() + 10  # a third of the lease
    clock.advance(10)
    reachable = False
    supervisor._heartbeat()  # unreachable: still due, for the next turn
    assert supervisor._next_heartbeat == clock.monotonic()
    clock.advance(1)
    reachable = True
    supervisor._heartbeat()
    assert beats == [T0, clock.now()]
    assert clock.now() != T0
    assert supervisor._next_heartbeat == clock.monotonic() + 10


def test_waiting_for_a_job_times_out_on_the_apps_clock(clock):
    app = tasktrail.App("sqlite:///:memory:", clock=clock)
    polls: list[float] = []

    def job(job_id: int) -> Any:
        polls.append(clock.monotonic())
        assert len(polls) < 10, "the wait did not read the app's clock"
        clock.advance(1.0)  # each look at the job takes a second of the clock's time
        return make_job(id=job_id, status="running")

    app.job = job  # type: ignore[method-assign]
    with pytest.raises(TimeoutError, match="still running after 3s"):
        JobHandle(app, 7).wait(timeout=3.0, poll_interval=0)
    assert len(polls) == 3


def test_a_manual_clock_moves_both_readings_together_and_only_forward(clock):
    clock.advance(90)
    assert clock.now() == datetime(2030, 1, 1, 12, 1, 30, tzinfo=timezone.utc)
    assert clock.monotonic() == 1e9 + 90
    with pytest.raises(ValueError):
        clock.advance(-1)
    assert clock.monotonic() == 1e9 + 90


def test_a_delay_counts_from_the_apps_clock(clock, tmp_path):
    app = tasktrail.App(f"sqlite:///{tmp_path / 'jobs.db'}", clock=clock)

    @app.task(name="kpi")
    def kpi() -> None:
        pass

    try:
        handle = kpi.enqueue(delay=90)
        # 2030 on the clock: a delay from the system's clock would be years off
        assert app.job(handle.id).run_at == datetime(2030, 1, 1, 12, 1, 30, tzinfo=timezone.utc)
    finally:
        app.close()


def test_a_worker_that_was_paused_waits_a_lease_before_recovering_others(supervisor, clock):
    lease = supervisor.config.lease_seconds
    supervisor._after_pause(clock.monotonic())
    clock.advance(lease / 4)  # an ordinary turn: nothing changes
    supervisor._after_pause(clock.monotonic())
    assert supervisor._next_recover == 0.0
    clock.advance(lease)  # stopped for a whole lease: others may have lapsed because of it
    supervisor._after_pause(clock.monotonic())
    assert supervisor._next_recover == clock.monotonic() + lease
