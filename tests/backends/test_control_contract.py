"""Control of running workers and of queues in the Backend contract: a process count
asked for a worker by name, queues paused fleet-wide, and what a worker reads to act on
them. Run against every backend (the ``dsn`` fixture); time is a parameter."""

from __future__ import annotations

import os
from dataclasses import replace

from tasktrail.backends import Backend

from .helpers import T0, at, enqueue, new_job, readable, start, worker_info
from .targets import BackendTarget


def test_a_scale_request_reaches_the_running_worker_of_that_name_and_wakes_it(
    backend: Backend, dsn: str, backend_target: BackendTarget
) -> None:
    worker = backend.register_worker(worker_info("w", pid=os.getpid()), now=T0)
    other = backend.register_worker(worker_info("x"), now=T0)
    fd = backend.wakeup_fileno()
    assert fd is not None
    backend.consume_wakeups()
    operator = backend_target.open(dsn)  # `tasktrail workers scale`, from anywhere
    try:
        assert operator.request_processes("nobody", 3, now=at(1)) == 0
        assert backend.worker_control(worker).requested_processes is None
        assert operator.request_processes("w", 5, now=at(1)) == 1
        assert readable(fd, 10), "no wake-up after a scale request"
        assert backend.consume_wakeups() is True  # look at it now, not in a second
    finally:
        operator.close()
    assert backend.worker_control(worker).requested_processes == 5
    assert backend.worker_control(other).requested_processes is None

    # Applied part-way (it is still growing): the request stays until it is met.
    backend.update_worker_processes(worker, processes=3, reserve=192, now=at(2))
    [record] = [w for w in backend.list_workers() if w.id == worker]
    assert (record.processes, record.reserve, record.requested_processes) == (3, 192, 5)
    backend.update_worker_processes(worker, processes=5, reserve=320, now=at(3))
    [record] = [w for w in backend.list_workers() if w.id == worker]
    assert (record.processes, record.reserve, record.requested_processes) == (5, 320, None)
    assert backend.worker_control(worker).requested_processes is None

    backend.unregister_worker(other, now=at(4))
    assert backend.request_processes("x", 2, now=at(5)) == 0  # a stopped worker is not asked


def test_a_worker_records_the_range_it_scales_itself_in(backend: Backend) -> None:
    info = replace(worker_info("auto"), autoscale=(1, 6))
    worker = backend.register_worker(info, now=T0)
    plain = backend.register_worker(worker_info("plain"), now=T0)
    records = {w.id: w for w in backend.list_workers()}
    assert (records[worker].autoscale_min, records[worker].autoscale_max) == (1, 6)
    assert (records[plain].autoscale_min, records[plain].autoscale_max) == (None, None)
    assert records[worker].to_dict()["autoscale_max"] == 6


def test_a_paused_queue_is_told_to_every_worker_and_listed_with_who_paused_it(
    backend: Backend, dsn: str, backend_target: BackendTarget
) -> None:
    worker = backend.register_worker(worker_info("w", pid=os.getpid()), now=T0)
    fd = backend.wakeup_fileno()
    assert fd is not None
    mail = enqueue(backend, [new_job(queue="mail") for _ in range(3)], now=T0)
    enqueue(backend, [new_job(queue="default")], now=T0)
    start(backend, worker, mail[0], at(1))
    backend.consume_wakeups()
    operator = backend_target.open(dsn)
    try:
        operator.set_queue_paused("mail", True, by="ann@desk", now=at(2))
        assert readable(fd, 10), "no wake-up after a pause"
        assert backend.consume_wakeups() is True
        operator.set_queue_paused("reports", True, by="bob@desk", now=at(3))  # no jobs yet
    finally:
        operator.close()
    assert backend.worker_control(worker).paused_queues == {"mail", "reports"}

    listed = {queue.name: queue for queue in backend.list_queues()}
    assert sorted(listed) == ["default", "mail", "reports"]
    mail_queue = listed["mail"]
    assert (mail_queue.paused, mail_queue.changed_by, mail_queue.changed_at) == (
        True, "ann@desk", at(2),
    )  # fmt: skip
    assert (mail_queue.queued, mail_queue.running) == (2, 1)
    default = listed["default"]
    assert (default.paused, default.changed_by, default.queued, default.running) == (
        False, None, 1, 0,
    )  # fmt: skip
    assert (listed["reports"].queued, listed["reports"].paused) == (0, True)

    backend.set_queue_paused("mail", False, by="carl@desk", now=at(4))
    resumed = {queue.name: queue for queue in backend.list_queues()}["mail"]
    assert (resumed.paused, resumed.changed_by, resumed.changed_at) == (False, "carl@desk", at(4))
    assert backend.worker_control(worker).paused_queues == {"reports"}
    assert resumed.to_dict()["paused"] is False


def test_which_queues_hold_queued_jobs_and_whether_any_is_due(backend: Backend) -> None:
    worker = backend.register_worker(worker_info(), now=T0)
    assert backend.queued_queues() == []
    assert backend.has_backlog((), now=at(1)) is False
    [running] = enqueue(backend, [new_job(queue="a")], now=T0)
    start(backend, worker, running, at(1))
    enqueue(backend, [new_job(queue="c"), new_job(queue="b"), new_job(queue="c")], now=T0)
    enqueue(backend, [new_job(queue="later", run_at=at(100))], now=T0)
    # a queue whose only job runs holds none queued; one whose job is not due yet does
    assert backend.queued_queues() == ["b", "c", "later"]
    assert backend.has_backlog((), now=at(2)) is True
    assert backend.has_backlog(("b", "x"), now=at(2)) is True
    assert backend.has_backlog(("a", "x"), now=at(2)) is False
    assert backend.has_backlog(("later",), now=at(2)) is False
    assert backend.has_backlog(("later",), now=at(100)) is True


def test_a_queue_tells_how_long_its_longest_waiting_due_job_has_waited(backend: Backend) -> None:
    worker = backend.register_worker(worker_info(), now=T0)
    [first, second] = enqueue(backend, [new_job(queue="mail") for _ in range(2)], now=at(1))
    enqueue(backend, [new_job(queue="mail")], now=at(5))
    enqueue(backend, [new_job(queue="later", run_at=at(100))], now=at(1))
    start(backend, worker, first, at(6))  # running: no longer waiting
    listed = {queue.name: queue for queue in backend.list_queues()}
    assert listed["mail"].oldest_run_at == at(1)  # the second job, enqueued at 1
    assert listed["mail"].oldest_wait(at(11)) == 10.0
    assert listed["later"].oldest_run_at == at(100)
    assert listed["later"].oldest_wait(at(11)) is None  # nothing due yet
    start(backend, worker, second, at(12))
    mail = {queue.name: queue for queue in backend.list_queues()}["mail"]
    assert mail.oldest_run_at == at(5)
    assert mail.to_dict()["oldest_run_at"] == at(5).isoformat()
